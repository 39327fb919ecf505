"""Path policy: every file parameter of a submission is normalised once (scheme case, ``..``, symlinks) and, for a
restricted caller (the HTTP API), must stay inside a storage zone or an allowed root (GEOMILL_SOURCE_ROOTS, else the
data folder's bronze zone) and never name the state database.

Cloud URIs (``s3://``, ``az://``) are allowed to a restricted caller only inside a zone whose base is remote or a
cloud prefix listed in GEOMILL_SOURCE_ROOTS; HTTP(S) URLs are never sources (no GDAL /vsicurl/ to arbitrary hosts).
A missing input, local or remote (a HEAD request; for a prefix such as ``s3://bucket/scenes/``, one page of its
listing), is refused at submit."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from geomill.domain import InvalidInput
from geomill.storage.base import ZONES
from geomill.storage.uris import CLOUD_SCHEMES, Location, parse

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)


class Storage(Protocol):
    """What the policy needs of storage: where a zone URI really is (confined to its zone, InvalidInput otherwise),
    the remote zone bases, and whether an object exists."""

    root: Path

    def local_path(self, uri: str) -> Path: ...

    def resolve(self, uri: str) -> Location: ...

    def remote_bases(self) -> list[Location]: ...

    def exists(self, uri: str) -> bool: ...

    def list(self, prefix: str, pattern: str | None = None, batch: int = 1000) -> Iterator[list[Any]]: ...

    def check_prefix(self, uri: str) -> None: ...


@dataclass(frozen=True)
class PathPolicy:
    """`restricted`: file parameters must resolve inside `roots` (already resolved) or a storage zone, and never to
    a `denied` file (the SQLite database, whose journal files share its name as a prefix)."""

    restricted: bool
    roots: tuple[Path, ...] = ()
    denied: tuple[Path, ...] = ()
    inputs: bool = True  # the files must exist now: a missing input is refused at submit, not by a worker
    cloud_roots: tuple[Location, ...] = ()  # s3:// and az:// prefixes a restricted caller may name
    prefix: bool = False  # the parameter names a folder or prefix (``x-geomill-prefix``): its bucket must exist


def policy_for(source_roots: Sequence[str | Path], storage: Storage, *, restricted: bool,
               denied: tuple[Path, ...] = (), inputs: bool = True) -> PathPolicy:
    """The policy of a caller: the configured roots, else the bronze zone (not the data folder: it holds the
    state database); cloud prefixes among the roots and the remote zone bases allow those objects. With `inputs`,
    a local file or object that does not exist is refused."""
    if not restricted:
        return PathPolicy(False, inputs=inputs)
    cloud = [parse(str(r)) for r in source_roots if "://" in str(r)]
    local = [Path(r) for r in source_roots if "://" not in str(r)]
    if not source_roots:
        local = [storage.root / "bronze"]
    return PathPolicy(True, tuple(r.resolve() for r in local), tuple(d.resolve() for d in denied), inputs,
                      tuple(cloud) + tuple(storage.remote_bases()))


def _inside(loc: Location, root: Location) -> bool:
    if (loc.backend, loc.bucket) != (root.backend, root.bucket):
        return False
    prefix = root.key if not root.key or root.key.endswith("/") else root.key + "/"
    return loc.key.startswith(prefix) or loc.key == root.key


@functools.cache
def prefix_fields(model: type[BaseModel]) -> frozenset[str]:
    """The file parameters that name a folder or prefix (``x-geomill-prefix``): checked as a listable place (a
    folder, or a prefix of a bucket that exists), not as one object."""
    props = model.model_json_schema().get("properties", {})
    return frozenset(name for name, prop in props.items() if prop.get("x-geomill-prefix"))


@functools.cache
def file_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The parameters a job type marks as naming files (``x-geomill-file``); computed once per model."""
    props = model.model_json_schema().get("properties", {})
    return tuple(name for name, prop in props.items() if prop.get("x-geomill-file"))


def check_params(params: dict[str, Any], model: type[BaseModel], storage: Storage, *, restricted: bool,
                 source_roots: Sequence[str | Path], denied: tuple[Path, ...] = (),
                 fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """`params` with each file parameter (a string or a list of strings; `fields`, default the model's marked
    ones) normalised; InvalidInput naming the field when one is refused. Other types are left to the model."""
    inputs = fields is None  # the model's marked file parameters are inputs: they must exist (not an output folder)
    fields = tuple(name for name in (file_fields(model) if fields is None else fields) if name in params)
    if not fields:  # most submissions: no file parameter, no file system call
        return params
    base = policy_for(source_roots, storage, restricted=restricted, denied=denied, inputs=inputs)
    out = dict(params)
    for name in fields:
        value = params[name]
        policy = dataclasses.replace(base, prefix=True) if name in prefix_fields(model) else base
        try:
            if isinstance(value, str):
                out[name] = normalise(value, storage, policy)
            elif isinstance(value, list):
                out[name] = [normalise(v, storage, policy) if isinstance(v, str) else v for v in value]
        except InvalidInput as exc:
            raise InvalidInput(f"{name}: {exc}", field=name) from None
    return out


def normalise(value: str, storage: Storage, policy: PathPolicy) -> str:
    """One spelling per file: the scheme lower-cased, local paths absolute with ``..`` and symlinks resolved
    (``file://`` kept when given). Refused for a restricted caller when outside the zones and roots."""
    if "\x00" in value:
        raise InvalidInput("contains a null byte")
    match = _SCHEME.fullmatch(value)
    if match is None:
        if policy.restricted and not Path(value).is_absolute():
            raise InvalidInput(f"{value!r}: a relative path is ambiguous over HTTP; use a storage URI (bronze://…) "
                               "or an absolute path inside an allowed root")
        return str(_local(value, policy))
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in ZONES:
        uri = f"{scheme}://{rest}"
        loc = storage.resolve(uri)  # confined to its zone, symlinks resolved
        if loc.is_local:
            _exists(Path(loc.key), value, policy)
        elif policy.inputs and policy.prefix:
            storage.check_prefix(uri)
        elif policy.inputs and not _object_or_prefix(storage, uri):
            raise InvalidInput(f"{value!r}: no such object ({loc.uri})")
        return uri
    if scheme in CLOUD_SCHEMES:
        loc = parse(value)
        if policy.restricted and not any(_inside(loc, root) for root in policy.cloud_roots):
            raise InvalidInput(f"{value!r} is outside the allowed buckets and containers (GEOMILL_SOURCE_ROOTS)")
        if policy.inputs and policy.prefix:
            storage.check_prefix(loc.uri)
        elif policy.inputs and not _object_or_prefix(storage, loc.uri):
            raise InvalidInput(f"{value!r}: no such object")
        return loc.uri
    if scheme in ("http", "https", "ftp"):
        raise InvalidInput(f"{value!r}: sources are not fetched over {scheme.upper()}; name a storage zone, a "
                           "configured bucket or container (s3://, az://) or a local file")
    if scheme != "file":
        if policy.restricted:
            raise InvalidInput(f"unsupported storage URI {value!r}")
        return f"{scheme}://{rest}"  # a scheme storage does not serve: the task that reads it says what is wrong
    host, _, path = rest.partition("/")
    if host.lower() not in ("", "localhost"):
        raise InvalidInput(f"{value!r}: a file URI names no host other than localhost")
    return "file://" + str(_local("/" + path, policy))


def _object_or_prefix(storage: Storage, uri: str) -> bool:
    """An object (one HEAD), or a prefix with at least one object under it (one page of its listing): a
    source_prefix such as ``s3://bucket/scenes/`` names no object itself."""
    if storage.exists(uri):
        return True
    return next(iter(storage.list(uri.rstrip("/") + "/", batch=1)), None) is not None


def _exists(path: Path, value: str, policy: PathPolicy) -> Path:
    """A missing input is refused at submit (exit 2 / 422 at once), not after a worker started on it."""
    if policy.inputs and not path.exists():
        raise InvalidInput(f"{value!r}: no such file or folder")
    return path


def _local(path: str, policy: PathPolicy) -> Path:
    if path.lower().startswith("/vsi"):
        raise InvalidInput(f"{path!r}: GDAL virtual file systems are not sources; use s3://, az:// or a zone URI")
    resolved = Path(path).expanduser().resolve()
    if not policy.restricted:
        return _exists(resolved, path, policy)
    # the roots are not named: a refusal must not map the server's file system for the caller
    if not any(resolved == r or r in resolved.parents for r in policy.roots):
        raise InvalidInput(f"{path!r} is outside the allowed roots (GEOMILL_SOURCE_ROOTS)")
    if any(resolved.parent == d.parent and resolved.name.startswith(d.name) for d in policy.denied):
        raise InvalidInput(f"{path!r} is the state database")
    return _exists(resolved, path, policy)
