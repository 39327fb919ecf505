"""The short form of the chaos harness (issue 20): each fault once on a small mixed workload (a raster job, a vector
job into PostGIS and a fanout of N tasks) run by real `geomill worker` processes. Every drill must end with nothing
lost, nothing applied twice and no job stuck. The long form, with repetitions, 1,000-task fanouts and a soak, is
bench/chaos.py; its table is in BENCHMARKS.md. The PostgreSQL and RabbitMQ restart drills stop shared servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import FAULTS, run_disk_full, run_fault

pytestmark = pytest.mark.slow

SHORT = ["kill_after_claim", "kill_mid_task", "kill_before_complete", "kill_planner_between_chunks",
         "kill_janitor_leader", "postgres_slow_and_dropped", "postgres_partition", "rabbitmq_unreachable",
         "rabbitmq_restart", "postgres_restart", "object_store_flaky",
         "worker_partitioned_netns"]


@pytest.mark.parametrize("name", SHORT)
def test_fault_loses_nothing_duplicates_nothing_and_recovers(name: str, tmp_path: Path, pg_url: str,
                                                             request: pytest.FixtureRequest) -> None:
    fault = FAULTS[name]
    if name == "postgres_restart" and not Path("/etc/postgresql").exists():
        pytest.skip("no local PostgreSQL cluster to restart")
    broker = request.getfixturevalue("amqp_url") if fault.broker else None
    result = run_fault(fault, tmp_path, pg_url, broker, n=12, sleep_s=0.2)
    assert result.clean and result.recovery_s is not None, result
    assert not any("died" in note for note in result.notes), result
    if name in ("kill_after_claim", "kill_mid_task", "kill_before_complete"):
        assert result.retried >= 1, result  # the drill hit a task: it took a second attempt
    if name == "object_store_flaky":
        assert not any("never met" in note for note in result.notes), result
    if name == "worker_partitioned_netns":
        assert not any("never ran" in note for note in result.notes), result
        assert result.retried >= 1, result  # the cut-off host's task ran again on the other worker
    if name == "kill_before_complete":
        assert result.reruns >= 1, result  # its output was written, then written again by the next attempt


def test_disk_full_fails_the_raster_job_with_a_clear_error_and_the_worker_goes_on(tmp_path: Path,
                                                                                    pg_url: str) -> None:
    result = run_disk_full(tmp_path, pg_url, n=6)
    assert result.clean and result.recovery_s is not None, result  # the fanout job completed, no COG left
    assert not any(w in n for n in result.notes for w in ("died", "expected", "does not name")), result
