"""One storage over local folders, S3 and Azure Blob, addressed by URIs (obstore for the clouds).

Zones: ``bronze://key``, ``silver://key``, ``gold://key`` are aliases for configured bases (GEOMILL_BRONZE_URL, …;
default the data folder's ``bronze/``, ``silver/``, ``gold/``). Other URIs name their backend directly: a local path
or ``file://``, ``s3://bucket/key``, ``az://container/blob``.

Credentials follow each cloud's environment conventions (``AWS_*``, ``AZURE_STORAGE_*``), are read once when the
storage is built and kept out of its repr, its errors and its results. Errors: a missing object, a missing bucket or
refused credentials are InvalidInput (never retried) naming the URI; anything else (a connection refused, a 5xx) is
a plain exception the worker retries.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from geomill.domain import InvalidInput
from geomill.faults import fault_point
from geomill.storage.base import ZONES, StorageError
from geomill.storage.uris import Location, check_key, parse, scheme_of

LIST_BATCH = 1000
SCRATCH = ".staging"  # under the data folder: where outputs bound for a remote zone are written first
SCRATCH_MAX_AGE_SECONDS = 6 * 3600.0  # a staging folder untouched this long was left by a killed process
SCRATCH_OWNER = ".owner"  # in each staging folder: host, PID namespace, PID and start time of the process using it
PROBE_TIMEOUT_SECONDS = 2.0
# HTTP statuses as obstore reports them inside generic errors (a list request has no typed NotFound/PermissionDenied)
_DENIED = re.compile(r"\b(401 Unauthorized|403 Forbidden)\b")
_MISSING = re.compile(r"\b404 Not Found\b")
_NO_BUCKET = re.compile(r"NoSuchBucket|ContainerNotFound")
_QUERY = re.compile(r"\?[^\s\"'<>]*")  # query strings may hold a SAS signature: never repeated in a message


@dataclass(frozen=True)
class ObjectStat:
    uri: str
    size: int
    etag: str | None  # None for local files
    mtime: datetime


def _scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without query strings (a SAS token) and without any of `secrets` (keys, tokens, SAS values)."""
    text = _QUERY.sub("?…", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return text


_SECRET_SETTINGS = ("secret_access_key", "session_token", "account_key", "sas_key")


def azure_settings(env: Mapping[str, str]) -> dict[str, str]:
    """Account, key or SAS and endpoint from AZURE_STORAGE_CONNECTION_STRING, else AZURE_STORAGE_ACCOUNT + key/SAS."""
    out: dict[str, str] = {}
    conn = env.get("AZURE_STORAGE_CONNECTION_STRING", "")
    if conn:
        parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        for ours, theirs in (("account_name", "AccountName"), ("account_key", "AccountKey"),
                             ("endpoint", "BlobEndpoint"), ("sas_key", "SharedAccessSignature")):
            if parts.get(theirs):
                out[ours] = parts[theirs]
    else:
        for ours, theirs in (("account_name", "AZURE_STORAGE_ACCOUNT"), ("account_key", "AZURE_STORAGE_ACCESS_KEY"),
                             ("sas_key", "AZURE_STORAGE_SAS_TOKEN")):
            if env.get(theirs):
                out[ours] = env[theirs]
    return out


def s3_settings(env: Mapping[str, str]) -> dict[str, str]:
    """Endpoint, keys and region from the AWS_* variables (AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL)."""
    values = {
        "endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
        "access_key_id": env.get("AWS_ACCESS_KEY_ID"), "secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": env.get("AWS_SESSION_TOKEN"), "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    }
    return {k: v for k, v in values.items() if v}


def gdal_options(env: Mapping[str, str]) -> dict[str, str]:
    """GDAL config options for /vsis3/ and /vsiaz/ from the same environment obstore reads."""
    options: dict[str, str] = {}
    s3 = s3_settings(env)
    if "endpoint" in s3:
        endpoint = s3["endpoint"]
        scheme, _, host = endpoint.partition("://")
        options["AWS_S3_ENDPOINT"] = host.rstrip("/") or endpoint
        options["AWS_HTTPS"] = "NO" if scheme == "http" else "YES"
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    for ours, theirs in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                         ("session_token", "AWS_SESSION_TOKEN"), ("region", "AWS_REGION")):
        if ours in s3:
            options[theirs] = s3[ours]
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCESS_KEY",
                 "AZURE_STORAGE_SAS_TOKEN"):
        if env.get(name):
            options[name] = env[name]
    return options


_gdal_lock = threading.Lock()
_gdal_applied: dict[str, str] = {}


def configure_gdal(env: Mapping[str, str] | None = None) -> None:
    """Hand the cloud credentials to GDAL, for both rasterio's and pyogrio's libgdal (rasterio refuses AWS_*
    options in rasterio.Env, so they are set process-wide). Set again in rasterio's libgdal whenever they are not
    there: a rasterio.Env that picked AWS credentials from the environment clears those options when it exits."""
    options = gdal_options(os.environ if env is None else env)
    if not options:
        return
    from rasterio.env import get_gdal_config, set_gdal_config

    with _gdal_lock:
        for key, value in options.items():
            if get_gdal_config(key, normalize=False) != value:
                set_gdal_config(key, value)
        if all(_gdal_applied.get(k) == v for k, v in options.items()):
            return
        try:
            import pyogrio

            pyogrio.set_gdal_config_options(dict(options))
        except ImportError:  # pragma: no cover - pyogrio is a dependency
            pass
        _gdal_applied.update(options)


class ObjectStorage:
    """Zones (bronze/silver/gold) mapped to local folders or cloud prefixes; any URI in, the same operations out."""

    def __init__(self, root: Path, zones: Mapping[str, str | None] | None = None,
                 env: Mapping[str, str] | None = None, public_urls: Mapping[str, str | None] | None = None,
                 signed_url_seconds: float | None = None) -> None:
        self.root = Path(root).resolve()
        self.signed_url_seconds = signed_url_seconds  # set: hrefs of remote objects are signed URLs (no public base)
        self._public = {zone: url.rstrip("/") + "/" for zone, url in (public_urls or {}).items() if url}
        self._env = dict(os.environ if env is None else env)
        self._bases: dict[str, Location] = {}
        for zone in ZONES:
            url = (zones or {}).get(zone)
            base = parse(url) if url else Location("file", "", str(self.root / zone))
            if not base.is_local and base.key and not base.key.endswith("/"):
                base = Location(base.backend, base.bucket, base.key + "/")
            self._bases[zone] = base
        self._stores: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the credentials
        return f"{type(self).__name__}({', '.join(f'{z}={b.uri}' for z, b in self._bases.items())})"

    # -- naming ---------------------------------------------------------------------------------------------------
    def zone_base(self, zone: str) -> Location:
        if zone not in ZONES:
            raise StorageError(f"unknown storage zone {zone!r}; expected one of {', '.join(ZONES)}")
        return self._bases[zone]

    def zone_path(self, zone: str) -> Path:
        base = self.zone_base(zone)
        if not base.is_local:
            raise StorageError(f"the {zone} zone is remote ({base.uri}): use gdal_path/staging")
        return Path(base.key)

    def ensure_zones(self) -> None:
        """Create the local zone folders; sweep scratch folders a killed process left behind."""
        for base in self._bases.values():
            if base.is_local:
                Path(base.key).mkdir(parents=True, exist_ok=True)
        self.sweep_scratch()

    def sweep_scratch(self, older_than_seconds: float = SCRATCH_MAX_AGE_SECONDS) -> int:
        """Remove staging folders (under <data dir>/.staging) left by killed processes: at once when the folder's
        owner was a process of this host (and PID namespace) that is gone, else once nothing has written to it for
        `older_than_seconds` (a running task writes to its folder, which keeps it young). Returns how many."""
        scratch = self.root / SCRATCH
        if not scratch.is_dir():
            return 0
        now, removed = datetime.now(tz=UTC).timestamp(), 0
        for folder in scratch.iterdir():
            try:
                if _owner_gone(folder / SCRATCH_OWNER):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
                    continue
                newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
            except FileNotFoundError:  # another process finished with it meanwhile
                continue
            if now - newest > older_than_seconds:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def remote_bases(self) -> list[Location]:
        return [b for b in self._bases.values() if not b.is_local]

    def resolve(self, uri: str) -> Location:
        """The backend location of `uri` (a zone alias resolved against its base, confined to it)."""
        scheme = scheme_of(uri)
        if scheme in ZONES:
            assert scheme is not None
            base = self._bases[scheme]
            raw = uri.split("://", 1)[1]
            if ".." in PurePosixPath(raw).parts:
                raise StorageError(f"storage key {raw!r} escapes the {scheme} zone")
            key = check_key(raw)
            if base.is_local:
                return Location("file", "", str(self._safe_join(Path(base.key), key, scheme)))
            return base.child(key)
        return parse(uri)

    @staticmethod
    def _safe_join(base: Path, key: str, zone: str) -> Path:
        path = (base / key).resolve()
        if path != base.resolve() and base.resolve() not in path.parents:
            raise StorageError(f"storage key {key!r} escapes the {zone} zone")
        return path

    def is_remote(self, uri: str) -> bool:
        return not self.resolve(uri).is_local

    def object_uri(self, uri: str) -> str:
        """Where `uri` really is: s3://…, az://… or an absolute local path (for hrefs other machines follow)."""
        return self.resolve(uri).uri

    def href(self, uri: str) -> str:
        """What another machine follows to read `uri`: the zone's public https base when one is configured
        (GEOMILL_SILVER_PUBLIC_URL), else a signed https URL of a remote object when signing is on
        (GEOMILL_SIGNED_URL_SECONDS), else the object's own URI (s3://…, az://…, or the local path)."""
        scheme = scheme_of(uri)
        if scheme in self._public:
            return self._public[scheme] + check_key(uri.split("://", 1)[1])
        if self.signed_url_seconds and self.is_remote(uri):
            return self.signed_url(uri, self.signed_url_seconds)
        return self.object_uri(uri)

    def signed_url(self, uri: str, seconds: float) -> str:
        """A presigned GET URL of a remote object valid for `seconds` (S3 SigV4; Azure a service SAS, which needs
        the account key). It is a bearer token for that one object: callers put it in documents, never in logs."""
        import obstore

        loc = self.resolve(uri)
        if loc.is_local:
            raise StorageError(f"{uri!r} is a local file: only S3 and Azure objects have signed URLs")
        try:
            return str(obstore.sign(self._store(loc), "GET", loc.key, timedelta(seconds=seconds)))
        except Exception as exc:  # signing is offline: a failure is the configuration (e.g. Azure without a key)
            raise StorageError(f"cannot sign a URL for {uri!r} (GEOMILL_SIGNED_URL_SECONDS needs S3 keys or an "
                               f"Azure account key): {type(exc).__name__}: {_scrub(str(exc)).splitlines()[0][:300]}") from None

    def local_mirror(self, uri: str) -> Path:
        """The local path of a zone URI even when the zone is remote: ``<data_dir>/<zone>/<key>`` (the static STAC
        catalog stays on local disk when silver is in the cloud)."""
        loc = self.resolve(uri)
        if loc.is_local:
            return Path(loc.key)
        scheme = scheme_of(uri)
        if scheme not in ZONES:
            raise StorageError(f"{uri!r} is not a zone URI")
        return self._safe_join(self.root / str(scheme), check_key(uri.split("://", 1)[1]), str(scheme))

    def uri_for(self, zone: str, key: str) -> str:
        self.zone_base(zone)
        self.resolve(f"{zone}://{key.lstrip('/')}")
        return f"{zone}://{key.lstrip('/')}"

    def local_path(self, uri: str) -> Path:
        loc = self.resolve(uri)
        if not loc.is_local:
            raise StorageError(f"{uri!r} is remote ({loc.uri}): use gdal_path/staging, not a local path")
        return Path(loc.key)

    def gdal_path(self, uri: str) -> str:
        """A name rasterio and pyogrio open in place: a local path, /vsis3/bucket/key or /vsiaz/container/key."""
        loc = self.resolve(uri)
        if loc.is_local:
            return loc.key
        configure_gdal(self._env)
        return f"/vsi{'s3' if loc.backend == 's3' else 'az'}/{loc.bucket}/{loc.key}"

    # -- clouds ---------------------------------------------------------------------------------------------------
    def _store(self, loc: Location) -> Any:
        with self._lock:
            store = self._stores.get((loc.backend, loc.bucket))
            if store is None:
                store = self._stores[(loc.backend, loc.bucket)] = self._make_store(loc)
            return store

    def _make_store(self, loc: Location, client_options: Mapping[str, Any] | None = None,
                    retry_config: Mapping[str, Any] | None = None) -> Any:
        from obstore.store import AzureStore, S3Store

        options: dict[str, Any]
        if loc.backend == "s3":
            options = dict(s3_settings(self._env))
            if "endpoint" in options:  # an emulator or S3-compatible server: path-style requests
                options["virtual_hosted_style_request"] = False
            store_class: Any = S3Store
        else:
            options = dict(azure_settings(self._env))
            store_class = AzureStore
        client = dict(client_options or {})
        if str(options.get("endpoint", "")).startswith("http://"):
            client["allow_http"] = True
        if client:
            options["client_options"] = client
        if retry_config is not None:
            options["retry_config"] = dict(retry_config)
        return store_class(loc.bucket, **options)

    def _secrets(self) -> tuple[str, ...]:
        """Every credential value this storage holds (kept out of the messages it produces)."""
        values = [*s3_settings(self._env).items(), *azure_settings(self._env).items()]
        conn = self._env.get("AZURE_STORAGE_CONNECTION_STRING", "")
        return tuple(v for k, v in values if k in _SECRET_SETTINGS) + ((conn,) if conn else ())

    def probe(self, zone: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
        """Check that a remote zone answers: one listing request of at most one key under its base, with a short
        timeout and no retries. Raises InvalidInput (missing bucket, refused credentials) or ConnectionError
        (unreachable, timeout, 5xx), their messages free of credentials and query strings; a local zone is not
        probed here (the health check writes to it)."""
        import obstore

        base = self.zone_base(zone)
        if base.is_local:
            return
        limit = timedelta(seconds=timeout)
        store = self._make_store(base, {"timeout": limit, "connect_timeout": limit}, {"max_retries": 0})
        try:
            next(iter(obstore.list(store, prefix=base.key or None, chunk_size=1)), None)
        except Exception as exc:
            text = _scrub(str(exc), self._secrets())
            text = text.strip().splitlines()[0] if text.strip() else ""  # not obstore's multi-line debug dump
            if _DENIED.search(text):
                raise InvalidInput(f"{base.uri}: access denied (check the credentials)") from None
            if _NO_BUCKET.search(text) or _MISSING.search(text):
                what = "bucket" if base.backend == "s3" else "container"
                raise InvalidInput(f"{base.uri}: the {what} {base.bucket!r} does not exist") from None
            raise ConnectionError(f"{base.uri} did not answer: {type(exc).__name__}: {text[:300]}") from None

    def _fail(self, exc: BaseException, uri: str, loc: Location) -> BaseException:
        """InvalidInput for what retrying cannot fix; a plain, scrubbed error (retried) for the rest."""
        from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError

        text = str(exc)
        what = "bucket" if loc.backend == "s3" else "container"
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or _DENIED.search(text):
            return InvalidInput(f"{uri!r}: access denied to {what} {loc.bucket!r} (check the credentials)")
        if isinstance(exc, NotFoundError | FileNotFoundError) or _MISSING.search(text):
            if not self._bucket_exists(loc):
                return InvalidInput(f"{uri!r}: the {what} {loc.bucket!r} does not exist")
            return InvalidInput(f"{uri!r}: no such object")
        return ConnectionError(f"storage request for {uri!r} failed: {type(exc).__name__}: "
                               f"{_scrub(text, self._secrets())[:300]}")

    def _bucket_exists(self, loc: Location) -> bool:
        import obstore

        try:
            next(iter(obstore.list(self._store(loc), chunk_size=1)), None)
        except Exception as exc:  # a list of a missing bucket is a generic error with 404 in it
            return not (_MISSING.search(str(exc)) or _NO_BUCKET.search(str(exc)))
        return True

    # -- operations -----------------------------------------------------------------------------------------------
    def stat(self, uri: str) -> ObjectStat:
        loc = self.resolve(uri)
        if loc.is_local:
            try:
                st = Path(loc.key).stat()
            except FileNotFoundError:
                raise InvalidInput(f"{uri!r}: no such file") from None
            return ObjectStat(loc.uri, st.st_size, None, datetime.fromtimestamp(st.st_mtime, tz=UTC))
        import obstore

        try:
            meta = obstore.head(self._store(loc), loc.key)
        except Exception as exc:
            raise self._fail(exc, uri, loc) from None
        return ObjectStat(loc.uri, int(meta["size"]), meta.get("e_tag"), meta["last_modified"])

    def exists(self, uri: str) -> bool:
        loc = self.resolve(uri)
        if loc.is_local:
            return Path(loc.key).exists()
        try:
            self.stat(uri)
        except InvalidInput as exc:
            if "no such object" in str(exc):
                return False
            raise
        return True

    def check_prefix(self, uri: str) -> None:
        """InvalidInput unless `uri` names a listable place: a local folder (or file), or a prefix in a bucket or
        container that exists (an empty prefix is fine: it lists nothing)."""
        loc = self.resolve(uri)
        if loc.is_local:
            if not Path(loc.key).exists():
                raise InvalidInput(f"{uri!r}: no such folder")
            return
        if not self._bucket_exists(loc):
            what = "bucket" if loc.backend == "s3" else "container"
            raise InvalidInput(f"{uri!r}: the {what} {loc.bucket!r} does not exist")

    def size(self, uri: str) -> int:
        return self.stat(uri).size

    def list(self, prefix: str, pattern: str | None = None, batch: int = LIST_BATCH) -> Iterator[list[ObjectStat]]:
        """The objects under `prefix` in batches of at most `batch` (constant memory); `pattern` an fnmatch glob
        on the key relative to the prefix. Local folders are walked lazily, one directory at a time, each streamed in
        directory order (not sorted: memory does not grow with a folder's size); cloud listings come in key order."""
        loc = self.resolve(prefix)
        out: list[ObjectStat] = []
        for item in (self._walk_local(loc) if loc.is_local else self._walk_remote(prefix, loc)):
            if pattern is None or fnmatch.fnmatchcase(item[0], pattern):
                out.append(item[1])
                if len(out) >= batch:
                    yield out
                    out = []
        if out:
            yield out

    def _walk_local(self, loc: Location) -> Iterator[tuple[str, ObjectStat]]:
        """Files below `loc` in the byte order of their relative keys, as S3 and Azure list them (a folder sorts
        as its name + "/"), one directory's entries in memory per level."""
        root = Path(loc.key)
        if root.is_file():
            st = root.stat()
            yield root.name, ObjectStat(str(root), st.st_size, None, datetime.fromtimestamp(st.st_mtime, tz=UTC))
            return
        stack = [iter(_sorted_entries(root))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
            elif entry.is_dir(follow_symlinks=False):
                stack.append(iter(_sorted_entries(Path(entry.path))))
            elif entry.is_file():
                st = entry.stat()
                yield (Path(entry.path).relative_to(root).as_posix(),
                       ObjectStat(entry.path, st.st_size, None, datetime.fromtimestamp(st.st_mtime, tz=UTC)))

    def _walk_remote(self, prefix: str, loc: Location) -> Iterator[tuple[str, ObjectStat]]:
        import obstore

        store = self._store(loc)
        try:
            for chunk in obstore.list(store, prefix=loc.key or None, chunk_size=LIST_BATCH):
                for meta in chunk:
                    key = meta["path"]
                    rel = key[len(loc.key):].lstrip("/")
                    yield rel, ObjectStat(f"{loc.backend}://{loc.bucket}/{key}", int(meta["size"]),
                                          meta.get("e_tag"), meta["last_modified"])
        except InvalidInput:
            raise
        except Exception as exc:
            raise self._fail(exc, prefix, loc) from None

    def read_bytes(self, uri: str) -> bytes:
        loc = self.resolve(uri)
        if loc.is_local:
            try:
                return Path(loc.key).read_bytes()
            except FileNotFoundError:
                raise InvalidInput(f"{uri!r}: no such file") from None
        import obstore

        try:
            return bytes(obstore.get(self._store(loc), loc.key).bytes())
        except Exception as exc:
            raise self._fail(exc, uri, loc) from None

    def read_head(self, uri: str, length: int) -> bytes:
        """The first `length` bytes of `uri` (fewer when it is shorter): one range request, not the object."""
        loc = self.resolve(uri)
        if loc.is_local:
            try:
                with open(loc.key, "rb") as f:
                    return f.read(length)
            except FileNotFoundError:
                raise InvalidInput(f"{uri!r}: no such file") from None
        import obstore

        try:
            return bytes(obstore.get_range(self._store(loc), loc.key, start=0, length=length))
        except Exception as exc:
            if "range" in str(exc).lower() and "not satisfiable" in str(exc).lower():  # a shorter object
                return self.read_bytes(uri)[:length]
            raise self._fail(exc, uri, loc) from None

    def write_bytes(self, uri: str, data: bytes) -> None:
        loc = self.resolve(uri)
        if loc.is_local:
            _replace_atomically(Path(loc.key), lambda tmp: tmp.write_bytes(data))
            return
        self._put(uri, loc, data)

    def put_file(self, local: Path, uri: str) -> None:
        """Publish a copy of the local file under `uri` atomically (readers see the old object or the whole new
        one); `local` is left in place."""
        loc = self.resolve(uri)
        if loc.is_local:
            _replace_atomically(Path(loc.key), lambda tmp: shutil.copyfile(local, tmp))
            return
        self._put(uri, loc, Path(local))

    def _put(self, uri: str, loc: Location, data: bytes | Path) -> None:
        import obstore

        try:  # one PUT, or a multipart upload completed only at the end: atomic either way
            obstore.put(self._store(loc), loc.key, data)
        except Exception as exc:
            raise self._fail(exc, uri, loc) from None

    def delete(self, uri: str) -> None:
        loc = self.resolve(uri)
        if loc.is_local:
            Path(loc.key).unlink(missing_ok=True)
            return
        import obstore

        try:
            obstore.delete(self._store(loc), loc.key)
        except Exception as exc:
            failure = self._fail(exc, uri, loc)
            if not (isinstance(failure, InvalidInput) and "no such object" in str(failure)):
                raise failure from None

    def fetch(self, uri: str, dest: Path) -> Path:
        """Download `uri` to `dest` in streamed chunks (memory does not grow with the object)."""
        loc = self.resolve(uri)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if loc.is_local:
            shutil.copyfile(loc.key, dest)
            return dest
        import obstore

        try:
            result = obstore.get(self._store(loc), loc.key)
            with open(dest, "wb") as out:
                for chunk in result:
                    out.write(chunk)
        except Exception as exc:
            dest.unlink(missing_ok=True)
            raise self._fail(exc, uri, loc) from None
        return dest

    @contextmanager
    def staging(self, uri: str) -> Iterator[Path]:
        """A local temporary path to write `uri` into: published atomically when the block succeeds, removed
        (with GDAL's side files) when it fails. Beside the final file when local; under the data folder's
        scratch space when remote."""
        loc = self.resolve(uri)
        name = Path(loc.key).name
        if loc.is_local:
            folder = Path(loc.key).parent
        else:
            folder = self.root / SCRATCH / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        if not loc.is_local:  # lets the next sweep remove the folder at once if this process is killed
            (folder / SCRATCH_OWNER).write_text(_this_process())
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            yield tmp
            fault_point("before_publish")
            if loc.is_local:
                os.replace(tmp, loc.key)  # same folder: a rename
            else:
                self.put_file(tmp, uri)
        finally:
            for leftover in folder.glob(f"{tmp.name}*"):
                leftover.unlink(missing_ok=True)
            if not loc.is_local:
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def scratch_copy(self, uri: str) -> Iterator[Path]:
        """A local copy of the remote object `uri` in the scratch space (streamed; memory does not grow with it),
        removed when the block ends, and by the next sweep if this process is killed first."""
        folder = self.root / SCRATCH / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SCRATCH_OWNER).write_text(_this_process())
        try:
            yield self.fetch(uri, folder / Path(self.resolve(uri).key).name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def scratch_dir(self) -> Path:
        return self.root / SCRATCH


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    """A folder's entries in key order: a subfolder as its name + "/", so "a-b" comes before "a/x" as in S3."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return sorted(entries, key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)


class LocalStorage(ObjectStorage):
    """Every zone a folder under `root`: ``<root>/bronze``, ``<root>/silver``, ``<root>/gold``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, None)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: PIDs are taken to be the host's
        return ""


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), "" where /proc has none, None if it
    does not exist: with the PID, it tells the process from a later one that reused its PID."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""
    except (OSError, IndexError):
        return ""


def _this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}\n{_pid_namespace()}\n{pid}\n{_start_time(pid) or ''}\n"


def _owner_gone(owner_file: Path) -> bool:
    """True when `owner_file` names a process of this host and PID namespace that no longer runs (a folder of
    another host, or whose owner cannot be told, is left to the age rule)."""
    try:
        host, namespace, pid, started = owner_file.read_text().split("\n")[:4]
    except (FileNotFoundError, ValueError):
        return False
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid.isdigit():
        return False
    now = _start_time(int(pid))
    return now is None or bool(started and now and now != started)


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a temporary file beside `path`, then rename it over `path`: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
