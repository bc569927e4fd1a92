"""Sync jobs for operators: start, read, follow, cancel and list, on any node.

Jobs live in the store, so any node answers for any job: `start` adds a PENDING job that
some node's worker claims within `sync.poll_seconds`, `cancel` flags it for whichever
node runs it (it stops at its next batch boundary, cursor committed), and `watch`
follows the job's row until the job ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from adapters.base import Adapter
from certstore.sync_jobs import SyncJobRepository
from domain.errors import FailedPrecondition, InvalidRequest, NotFound
from domain.sync_jobs import MANUAL_TRIGGER, JobState, SyncJob, SyncMode
from exchange.app import pages
from exchange.hub import Hub

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200
WATCH_POLL_SECONDS: Final = 0.5
# A watcher hears from the hub at least this often, even when nothing moved.
WATCH_KEEPALIVE_SECONDS: Final = 10.0
_LISTING: Final = "sync-jobs"


def parse_job_id(text: str, field: str = "job_id") -> int:
    """A job id from a request. Raises `InvalidRequest` naming `field`."""
    text = text.strip()
    if not text:
        raise InvalidRequest(field, "required")
    if not text.isascii() or not text.isdigit() or int(text) < 1 or len(text) > 18:
        raise InvalidRequest(field, f"{text[:40]!r} is not a sync job id (a positive number)")
    return int(text)


def can_stream_changes(adapter: Adapter) -> bool:
    """True when the adapter's kind implements change streams at all."""
    return type(adapter)._changes is not Adapter._changes


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: tuple[SyncJob, ...]
    next_page_token: str


class SyncService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.jobs = SyncJobRepository(hub.database, hash_alg=hub.records.hash_alg)

    async def start(self, adapter_id: str, mode: SyncMode) -> SyncJob:
        """Queue a job. Raises `InvalidRequest`, `NotFound` (no such adapter),
        `FailedPrecondition` (its kind cannot stream changes), `StoreError`."""
        adapter_id = adapter_id.strip()
        if not adapter_id:
            raise InvalidRequest("adapter_id", "required")
        adapter = next((a for a in self.hub.adapters if a.adapter_id == adapter_id), None)
        if adapter is None:
            raise NotFound(f"no adapter {adapter_id!r} on this hub")
        if not can_stream_changes(adapter):
            raise FailedPrecondition(
                f"adapter {adapter_id} (kind {adapter.spec.kind}) cannot stream changes"
            )
        job = await asyncio.to_thread(
            self.jobs.create, adapter_id, mode, MANUAL_TRIGGER, datetime.now(UTC)
        )
        assert job is not None  # only schedule ticks are deduplicated
        return job

    async def get(self, job_id: int) -> SyncJob:
        """Raises `NotFound`, `StoreError`."""
        return await asyncio.to_thread(self.jobs.get, job_id)

    async def watch(self, job_id: int) -> AsyncIterator[SyncJob]:
        """The job now, then every change (and a keep-alive when quiet) until it ends."""
        job = await asyncio.to_thread(self.jobs.get, job_id)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        yield job
        while not job.state.finished:
            await asyncio.sleep(WATCH_POLL_SECONDS)
            latest = await asyncio.to_thread(self.jobs.get, job_id)
            quiet = loop.time() - sent_at >= WATCH_KEEPALIVE_SECONDS
            if latest != job or quiet:
                job, sent_at = latest, loop.time()
                yield job

    async def cancel(self, job_id: int) -> SyncJob:
        """Raises `NotFound`, `FailedPrecondition` (already ended), `StoreError`."""
        return await asyncio.to_thread(self.jobs.request_cancel, job_id, datetime.now(UTC))

    async def list(
        self,
        *,
        adapter_id: str = "",
        states: Sequence[JobState] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> JobPage:
        """Jobs newest first, one page. Raises `InvalidRequest`, `StoreError`."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidRequest("page_size", f"must be 0..{MAX_PAGE_SIZE} (0 means 50)")
        size = page_size or DEFAULT_PAGE_SIZE
        position = pages.decode_page_token(page_token, _LISTING)
        before = None if position is None else pages.position_int(position, "before")
        jobs = await asyncio.to_thread(
            self.jobs.list_jobs,
            adapter_id=adapter_id.strip() or None,
            states=list(states),
            limit=size + 1,
            before_id=before,
        )
        page = jobs[:size]
        token = ""
        if len(jobs) > size:
            token = pages.encode_page_token(_LISTING, {"before": page[-1].job_id})
        return JobPage(tuple(page), token)
