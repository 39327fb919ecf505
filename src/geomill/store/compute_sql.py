"""Results and artifacts of solve jobs, in both SQL stores (migration 007). Each store mixes in `ComputeRecords`;
the statements are written once with ``:name`` parameters (PostgreSQL gets them through `pyformat`), the JSON
columns cast where the dialect needs it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from geomill.store.common_queries import pyformat
from geomill.store.rows import js, ts

_UPSERT_RESULT = (
    "INSERT INTO compute_results (job_id, app_id, definition, version, contract_sha256, engine, outputs, created_at) "
    "VALUES (:job_id, :app_id, :definition, :version, :contract_sha256, {engine}, {outputs}, :now) "
    "ON CONFLICT (job_id) DO UPDATE SET app_id = excluded.app_id, contract_sha256 = excluded.contract_sha256, "
    "engine = excluded.engine, outputs = excluded.outputs")
_UPSERT_ARTIFACT = (
    "INSERT INTO compute_artifacts (job_id, name, uri, media_type, size_bytes, sha256, created_at) "
    "VALUES (:job_id, :name, :uri, :media_type, :size_bytes, :sha256, :now) "
    "ON CONFLICT (job_id, name) DO UPDATE SET uri = excluded.uri, media_type = excluded.media_type, "
    "size_bytes = excluded.size_bytes, sha256 = excluded.sha256")
_RESULT = "SELECT * FROM compute_results WHERE job_id = :job_id"
_ARTIFACTS = ("SELECT name, uri, media_type, size_bytes, sha256, created_at FROM compute_artifacts "
              "WHERE job_id = :job_id ORDER BY name")


@cache
def statements(dialect: str) -> dict[str, str]:
    """The statements of `dialect` ("sqlite" or "postgres")."""
    if dialect == "postgres":
        cast = {"engine": "CAST(:engine AS jsonb)", "outputs": "CAST(:outputs AS jsonb)"}
        return {k: pyformat(v.format(**cast)) for k, v in
                {"result": _UPSERT_RESULT, "artifact": _UPSERT_ARTIFACT, "read": _RESULT, "artifacts": _ARTIFACTS}
                .items()}
    plain = {"engine": ":engine", "outputs": ":outputs"}
    return {"result": _UPSERT_RESULT.format(**plain), "artifact": _UPSERT_ARTIFACT, "read": _RESULT,
            "artifacts": _ARTIFACTS}


class ComputeRecords:
    """`ComputeStore` over the store's `_read`, `_write`, `_now_param` and `dialect`."""

    dialect: str

    def _read(self, sql: str, params: Any = ()) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    def _write(self, sql: str, params: Any = (), what: str = "write") -> int:
        raise NotImplementedError

    def _now_param(self) -> Any:
        raise NotImplementedError

    def save_compute_result(self, result: dict[str, Any], artifacts: list[dict[str, Any]]) -> None:
        """Upsert the result row, then each artifact row (idempotent: a re-run rewrites the same rows)."""
        sql, now = statements(self.dialect), self._now_param()
        self._write(sql["result"], {
            "job_id": result["job_id"], "app_id": result.get("app_id"), "definition": result["definition"],
            "version": result["version"], "contract_sha256": result["contract_sha256"],
            "engine": json.dumps(result["engine"]), "outputs": json.dumps(result["outputs"]), "now": now},
            what="save_compute_result")
        for a in artifacts:
            self._write(sql["artifact"], {"job_id": result["job_id"], "name": a["name"], "uri": a["uri"],
                                          "media_type": a["media_type"], "size_bytes": a["size_bytes"],
                                          "sha256": a["sha256"], "now": now}, what="save_compute_artifact")

    def compute_result(self, job_id: str) -> dict[str, Any] | None:
        sql = statements(self.dialect)
        rows = self._read(sql["read"], {"job_id": job_id})
        if not rows:
            return None
        r = rows[0]
        artifacts = [{**dict(a), "created_at": ts(a["created_at"])}
                     for a in self._read(sql["artifacts"], {"job_id": job_id})]
        return {"job_id": r["job_id"], "app_id": r["app_id"], "definition": r["definition"], "version": r["version"],
                "contract_sha256": r["contract_sha256"], "engine": js(r["engine"]), "outputs": js(r["outputs"]),
                "created_at": ts(r["created_at"]), "artifacts": artifacts}
