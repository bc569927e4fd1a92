"""`SyncWorker`: a node's loop that claims sync jobs and runs them.

Every node runs one. It claims jobs of the adapters it has (see
`SyncJobRepository.claim` for how nodes share jobs safely), runs up to
`sync.max_running_jobs` at once, and looks again every `sync.poll_seconds` or as soon
as a job of its own ends. On shutdown its jobs stop at a batch boundary and go back to
PENDING, so another node (or this one, restarted) resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog

from adapters.base import Adapter
from certstore.sync_jobs import SyncJobRepository
from domain.errors import TongbanError
from domain.sync_jobs import JobLease, SyncJob
from exchange.record_types import RecordTypes
from exchange.settings import SyncSettings
from exchange.sync.runner import SyncRunner

__all__ = ["SyncWorker", "worker_name"]

log = structlog.get_logger("tongban.sync")

# How long a stopping node waits for its jobs to reach a batch boundary.
STOP_GRACE_SECONDS = 30.0


def worker_name(settings: SyncSettings) -> str:
    """How this process names itself in job records: ``<node name or host>:<pid>``."""
    return f"{settings.node_name or socket.gethostname()}:{os.getpid()}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SyncWorker:
    """Claims and runs sync jobs for one node."""

    def __init__(
        self,
        repository: SyncJobRepository,
        adapters: Callable[[], Sequence[Adapter]],
        record_types: RecordTypes,
        settings: SyncSettings,
        *,
        name: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._repository = repository
        self._adapters = adapters
        self._record_types = record_types
        self._settings = settings
        self.name = name or worker_name(settings)
        self._clock = clock
        self._running: dict[int, tuple[SyncRunner, asyncio.Task[SyncJob]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running_jobs(self) -> list[int]:
        """Ids of the jobs this node runs right now."""
        return sorted(self._running)

    def start(self) -> None:
        """Start claiming on the running event loop (no-op when it runs no jobs)."""
        if self._settings.max_running_jobs > 0 and self._task is None:
            self._task = asyncio.create_task(self._claim_forever())

    def wake(self) -> None:
        """Look for jobs now instead of at the next poll."""
        self._wake.set()

    def cancel_locally(self, job_id: int) -> bool:
        """Ask this node's runner of `job_id` to stop at its next batch boundary."""
        running = self._running.get(job_id)
        if running is None:
            return False
        running[0].cancel()
        return True

    async def stop(self) -> None:
        """Stop claiming; running jobs stop at a batch boundary and go back to PENDING."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for runner, _ in self._running.values():
            runner.stop()
        tasks = [task for _, task in self._running.values()]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        for task in pending:
            # The lease runs out and another node resumes the job from its cursor.
            task.cancel()
        for task in done | pending:
            with contextlib.suppress(asyncio.CancelledError, TongbanError):
                await task

    async def _claim_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._claim_while_room()
            except TongbanError as exc:
                log.warning("sync jobs not claimed", worker=self.name, error=exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)

    async def _claim_while_room(self) -> None:
        settings = self._settings
        while len(self._running) < settings.max_running_jobs:
            adapters = {adapter.adapter_id: adapter for adapter in self._adapters()}
            lease = await asyncio.to_thread(
                self._repository.claim,
                self.name,
                list(adapters),
                settings.lease_seconds,
                self._clock(),
            )
            if lease is None:
                return
            adapter = adapters.get(lease.job.adapter_id)
            if adapter is None:  # deregistered between listing and claiming
                await asyncio.to_thread(self._repository.release, lease, self._clock())
                return
            self._launch(lease, adapter)

    def _launch(self, lease: JobLease, adapter: Adapter) -> None:
        log.info(
            "sync job claimed",
            job=lease.job.job_id,
            adapter=lease.job.adapter_id,
            worker=self.name,
            taken_over=lease.taken_over,
        )
        runner = SyncRunner(
            self._repository, adapter, self._record_types, self._settings, clock=self._clock
        )
        task = asyncio.create_task(runner.run(lease))
        job_id = lease.job.job_id
        self._running[job_id] = (runner, task)
        task.add_done_callback(lambda done: self._finished(job_id, done))

    def _finished(self, job_id: int, task: asyncio.Task[SyncJob]) -> None:
        self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error(
                "sync job left unfinished; its lease will expire",
                job=job_id,
                error=error.message if isinstance(error, TongbanError) else repr(error),
            )
        self._wake.set()
