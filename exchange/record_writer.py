"""Writes fetched records to the store behind the answer, in batched transactions.

The store is a cache of what departments hold: a lookup answers as soon as its sources
have, and the records it fetched are written shortly after, many lookups per
transaction. A failed write loses only cache entries (the departments still hold the
data) and is logged; the queue is bounded, so a slow store slows lookups down rather
than growing memory.

A record fetched again with the same content within `refresh_seconds` of its last
write is not written again: the stored fetch time then lags by at most that much,
which only ever makes stale-serving more cautious.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

import structlog

from certstore.records import RecordBatch, RecordRepository
from domain.records import SourceRecord, StoredRecord

log = structlog.get_logger("tongban.records")

MAX_BATCHES_PER_TRANSACTION = 500
MAX_PENDING_BATCHES = 10_000
REMEMBERED_RECORDS = 100_000

_Identity = tuple[str, str, str]


class RecordWriter:
    """A background task that drains submitted record batches into the store."""

    def __init__(self, repository: RecordRepository, refresh_seconds: float = 30.0) -> None:
        self._repository = repository
        self._refresh_seconds = refresh_seconds
        self._queue: asyncio.Queue[RecordBatch] | None = None
        self._task: asyncio.Task[None] | None = None
        # identity -> (content hash, monotonic time) of the last write, oldest first.
        self._written: OrderedDict[_Identity, tuple[str, float]] = OrderedDict()

    def start(self) -> None:
        """Start draining on the running event loop."""
        self._queue = asyncio.Queue(MAX_PENDING_BATCHES)
        self._task = asyncio.create_task(self._drain_forever(self._queue))

    async def submit(
        self,
        adapter_id: str,
        department: str,
        records: Sequence[SourceRecord],
        fetched: Sequence[StoredRecord],
        fetched_at: datetime,
    ) -> None:
        """Queue the records one adapter answered (`fetched` holds their hashes).

        Waits while the queue is full.
        """
        due = [
            record
            for record, stored in zip(records, fetched, strict=True)
            if self._due((adapter_id, record.record_type, record.source_record_id), stored)
        ]
        if due:
            await self._enqueue(RecordBatch(adapter_id, department, due, fetched_at))

    def _due(self, identity: _Identity, stored: StoredRecord) -> bool:
        now = time.monotonic()
        last = self._written.get(identity)
        if last and last[0] == stored.content_hash and now - last[1] < self._refresh_seconds:
            return False
        self._written[identity] = (stored.content_hash, now)
        self._written.move_to_end(identity)
        if len(self._written) > REMEMBERED_RECORDS:
            self._written.popitem(last=False)
        return True

    async def _enqueue(self, batch: RecordBatch) -> None:
        if self._queue is None:
            await asyncio.to_thread(self._repository.upsert_batches, [batch])
            return
        await self._queue.put(batch)

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (or failed and logged)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Flush, then stop the background task."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._queue = self._task = None

    async def _drain_forever(self, queue: asyncio.Queue[RecordBatch]) -> None:
        while True:
            batches = [await queue.get()]
            while len(batches) < MAX_BATCHES_PER_TRANSACTION and not queue.empty():
                batches.append(queue.get_nowait())
            try:
                await asyncio.to_thread(self._repository.upsert_batches, batches)
            except Exception as exc:  # a cache write failing must not stop later writes
                with contextlib.suppress(Exception):  # nor may a broken log sink
                    log.error("fetched records not cached", batches=len(batches), error=repr(exc))
            finally:
                for _ in batches:
                    queue.task_done()
