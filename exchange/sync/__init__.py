"""Adapter sync jobs: bulk, resumable copies of department data into the hub's store.

- `domain.sync_jobs`: the domain objects (`SyncJob`, `JobProgress`, `DeadLetter`, ...).
- `exchange.sync.schedule`: cron-like and interval schedules.
- `exchange.sync.progress`: rate and ETA of a running job.
- `exchange.sync.runner`: `SyncRunner`, which runs one claimed job batch by batch.
- `exchange.sync.worker`: `SyncWorker`, a node's claim loop, and `SyncScheduler`.

This module imports nothing, so `certstore` can use the domain objects without a cycle.
"""
