"""The compute tables (migration 007) on SQLite and PostgreSQL: a solve job's result and artifact rows are upserted
(a re-run of the same job rewrites them, never duplicates) and read back with their JSON and times."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from geomill.domain import NewJob
from geomill.store import open_store

RESULT = {"job_id": "a" * 64, "app_id": "h23", "definition": "sitefit", "version": "1.0.0",
          "contract_sha256": "c" * 64, "engine": {"mode": "in_process", "name": "geomill"},
          "outputs": {"placements": [], "reason": "no room", "metadata": {"definition": "sitefit"}}}
ARTIFACT = {"name": "outputs.json", "uri": "silver://compute/x/outputs.json", "media_type": "application/json",
            "size_bytes": 5_000_000_000, "sha256": "d" * 64}


def test_result_and_artifacts_upserted_and_read_back(tmp_path: Path, db_url: str | None) -> None:
    store = open_store(db_url or f"sqlite:///{tmp_path / 'geomill.db'}")
    try:
        store.migrate()
        store.create_job(NewJob(RESULT["job_id"], "solve", {"definition": "sitefit"}, 1))
        assert store.compute_result(RESULT["job_id"]) is None
        store.save_compute_result(RESULT, [ARTIFACT])
        store.save_compute_result({**RESULT, "outputs": {"placements": [1]}}, [{**ARTIFACT, "size_bytes": 7}])
        doc = store.compute_result(RESULT["job_id"])
        assert doc is not None
        assert doc["outputs"] == {"placements": [1]} and doc["engine"] == RESULT["engine"]
        assert doc["app_id"] == "h23" and doc["contract_sha256"] == "c" * 64
        assert isinstance(doc["created_at"], datetime) and doc["created_at"].tzinfo is not None
        (artifact,) = doc["artifacts"]
        assert {k: artifact[k] for k in ARTIFACT} == {**ARTIFACT, "size_bytes": 7}
        store.save_compute_result(RESULT, [ARTIFACT])  # sizes beyond 32 bits fit (BIGINT)
        assert store.compute_result(RESULT["job_id"])["artifacts"][0]["size_bytes"] == 5_000_000_000  # type: ignore[index]
    finally:
        store.close()
