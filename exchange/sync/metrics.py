"""Prometheus metrics of sync jobs (served with the hub's other metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SYNC_RECORDS = Counter(
    "tongban_sync_records_total",
    "Changes sync jobs committed, by adapter and outcome "
    "(applied, unchanged, withdrawn, dead_lettered).",
    ("adapter", "outcome"),
)
SYNC_RATE = Gauge(
    "tongban_sync_records_per_second",
    "Changes per second of the adapter's running sync job on this node (0 when idle).",
    ("adapter",),
)
SYNC_BATCH_SECONDS = Histogram(
    "tongban_sync_batch_commit_seconds",
    "Time to commit one sync batch (records, dead letters and cursor), by adapter.",
    ("adapter",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SYNC_JOBS = Counter(
    "tongban_sync_jobs_total",
    "Sync jobs this node ended, by adapter and end state.",
    ("adapter", "state"),
)
