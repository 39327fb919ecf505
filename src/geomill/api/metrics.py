"""Prometheus metrics, read from the database at scrape time: the database sees every worker on every machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from geomill.store.service_sql import DURATION_BUCKETS


class StoreCollector:
    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snap = snapshot

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("geomill_jobs", "jobs by type and status", labels=["job_type", "status"])
        for r in self.snap["jobs"]:
            jobs.add_metric([r["job_type"], r["status"]], r["n"])
        yield jobs
        depth = GaugeMetricFamily("geomill_queue_tasks", "tasks waiting or running by queue",
                                  labels=["queue", "status"])
        for r in self.snap["queues"]:
            depth.add_metric([r["target_queue"], r["status"]], r["n"])
        yield depth
        yield self._durations()
        retries = CounterMetricFamily("geomill_task_retries", "attempts beyond the first", labels=["task_type"])
        for r in self.snap["retries"]:
            retries.add_metric([r["task_type"]], float(r["n"] or 0))
        yield retries
        repairs = CounterMetricFamily("geomill_janitor_repairs", "repairs by the reconciler", labels=["kind"])
        for name, value in sorted(self.snap["counters"].items()):
            repairs.add_metric([name], float(value))
        yield repairs
        yield CounterMetricFamily("geomill_dead_letters", "dead-lettered work", value=self.snap["dead_letters"])

    def _durations(self) -> Metric:
        hist = HistogramMetricFamily("geomill_task_duration_seconds", "run time of completed tasks",
                                     labels=["task_type"])
        for r in self.snap["durations"]:
            buckets = [(str(b), float(r[f"le_{i}"] or 0)) for i, b in enumerate(DURATION_BUCKETS)]
            buckets.append(("+Inf", float(r["n"])))
            hist.add_metric([r["task_type"]], buckets, sum_value=float(r["total"] or 0))
        return hist


def render_metrics(store: Any) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store.metrics_snapshot()))
    return generate_latest(registry), CONTENT_TYPE_LATEST
