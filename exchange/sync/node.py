"""`SyncNode`: a hub node's part in sync jobs, its schedules and its worker.

`exchange.server.HubServer` starts one with the server and stops it first on shutdown,
so the node's running jobs reach a batch boundary and go back to PENDING while the
store is still open.
"""

from __future__ import annotations

import structlog

from certstore.records import cipher_of
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import SyncJob
from exchange.hub import Hub
from exchange.sync.scheduler import SyncScheduler
from exchange.sync.worker import SyncWorker

__all__ = ["SyncNode"]

log = structlog.get_logger("tongban.sync")


class SyncNode:
    """Runs this node's sync schedules and claims and runs sync jobs."""

    def __init__(self, hub: Hub) -> None:
        settings = hub.settings.sync
        self.repository = SyncJobRepository(
            hub.database, cipher_of(hub.records), hub.records.hash_alg
        )
        self.worker = SyncWorker(
            self.repository,
            lambda: hub.catalog.adapters,
            hub.record_types,
            settings,
        )
        self.scheduler = SyncScheduler.from_settings(
            self.repository, settings, on_created=self._created
        )

    def start(self) -> None:
        """Start the worker and the schedules on the running event loop."""
        self.worker.start()
        self.scheduler.start()
        log.info("sync node started", worker=self.worker.name)

    async def stop(self) -> None:
        """Stop the schedules, then the worker (its jobs go back to PENDING)."""
        await self.scheduler.stop()
        await self.worker.stop()

    def _created(self, job: SyncJob) -> None:
        self.worker.wake()
