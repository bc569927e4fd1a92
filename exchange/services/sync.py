"""`tongban.v1.SyncService`: start, watch and cancel adapter sync jobs.

Jobs live in the store, so any node answers for any job: Start adds a PENDING job that
some node's worker claims within `sync.poll_seconds`, Cancel flags it for whichever
node runs it (it stops at its next batch boundary, cursor committed), and Watch
follows the job's row until the job ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from adapters.base import Adapter
from certstore.sync_jobs import SyncJobRepository
from domain.errors import FailedPrecondition, InvalidRequest, NotFound
from domain.sync_jobs import MANUAL_TRIGGER, JobState, SyncJob, SyncMode
from exchange.generated import sync_pb2, sync_pb2_grpc
from exchange.hub import Hub
from exchange.services import convert

__all__ = ["SyncServicer", "job_to_proto"]

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200
WATCH_POLL_SECONDS: Final = 0.5
# A watcher hears from the hub at least this often, even when nothing moved.
WATCH_KEEPALIVE_SECONDS: Final = 10.0

_MODES: Final = {
    sync_pb2.SYNC_MODE_FULL: SyncMode.FULL,
    sync_pb2.SYNC_MODE_INCREMENTAL: SyncMode.INCREMENTAL,
}
_MODE_NUMBERS: Final = {mode: number for number, mode in _MODES.items()}
_STATES: Final = {
    sync_pb2.SYNC_JOB_STATE_PENDING: JobState.PENDING,
    sync_pb2.SYNC_JOB_STATE_RUNNING: JobState.RUNNING,
    sync_pb2.SYNC_JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
    sync_pb2.SYNC_JOB_STATE_FAILED: JobState.FAILED,
    sync_pb2.SYNC_JOB_STATE_CANCELLED: JobState.CANCELLED,
}
_STATE_NUMBERS: Final = {state: number for number, state in _STATES.items()}


def job_to_proto(job: SyncJob) -> sync_pb2.SyncJob:
    """The protobuf form of `job`, with its rate and (when the total is known) ETA."""
    progress = job.progress
    message = sync_pb2.SyncJob(
        job_id=str(job.job_id),
        adapter_id=job.adapter_id,
        mode=_MODE_NUMBERS[job.mode],
        state=_STATE_NUMBERS[job.state],
        progress=sync_pb2.SyncProgress(
            records_seen=progress.records_seen,
            applied=progress.applied,
            unchanged=progress.unchanged,
            dead_lettered=progress.dead_lettered,
            withdrawn=progress.withdrawn,
            total_estimate=progress.total_estimate or 0,
            records_per_second=progress.records_per_second,
        ),
        created_at=convert.timestamp(job.created_at),
        error=job.error,
        worker=job.worker,
        trigger=job.trigger,
    )
    eta = progress.eta_seconds
    if eta is not None and job.state is JobState.RUNNING:
        message.progress.eta.CopyFrom(convert.duration(eta))
    if job.started_at is not None:
        message.started_at.CopyFrom(convert.timestamp(job.started_at))
    if job.finished_at is not None:
        message.finished_at.CopyFrom(convert.timestamp(job.finished_at))
    return message


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


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.jobs = SyncJobRepository(hub.database)

    async def Start(
        self, request: sync_pb2.SyncServiceStartRequest, context: Context
    ) -> sync_pb2.SyncServiceStartResponse:
        adapter_id = request.adapter_id.strip()
        if not adapter_id:
            raise InvalidRequest("adapter_id", "required")
        if request.mode == sync_pb2.SYNC_MODE_UNSPECIFIED:
            mode = SyncMode.INCREMENTAL
        elif request.mode in _MODES:
            mode = _MODES[request.mode]
        else:
            raise InvalidRequest(
                "mode", f"unknown mode {request.mode}: SYNC_MODE_FULL or SYNC_MODE_INCREMENTAL"
            )
        adapter = next((a for a in self.hub.adapters if a.adapter_id == adapter_id), None)
        if adapter is None:
            raise NotFound(f"no adapter {adapter_id!r} on this hub")
        if not can_stream_changes(adapter):
            raise FailedPrecondition(
                f"adapter {adapter_id} (kind {adapter.spec.kind}) cannot stream changes"
            )
        job = await asyncio.to_thread(
            self.jobs.create, adapter_id, mode, MANUAL_TRIGGER, convert.utcnow()
        )
        assert job is not None  # only schedule ticks are deduplicated
        return sync_pb2.SyncServiceStartResponse(job=job_to_proto(job))

    async def Get(
        self, request: sync_pb2.SyncServiceGetRequest, context: Context
    ) -> sync_pb2.SyncServiceGetResponse:
        job = await asyncio.to_thread(self.jobs.get, parse_job_id(request.job_id))
        return sync_pb2.SyncServiceGetResponse(job=job_to_proto(job))

    async def Watch(
        self, request: sync_pb2.SyncServiceWatchRequest, context: Context
    ) -> AsyncIterator[sync_pb2.SyncServiceWatchResponse]:
        job_id = parse_job_id(request.job_id)
        job = await asyncio.to_thread(self.jobs.get, job_id)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        yield sync_pb2.SyncServiceWatchResponse(job=job_to_proto(job))
        while not job.state.finished:
            await asyncio.sleep(WATCH_POLL_SECONDS)
            latest = await asyncio.to_thread(self.jobs.get, job_id)
            quiet = loop.time() - sent_at >= WATCH_KEEPALIVE_SECONDS
            if latest != job or quiet:
                job, sent_at = latest, loop.time()
                yield sync_pb2.SyncServiceWatchResponse(job=job_to_proto(job))

    async def Cancel(
        self, request: sync_pb2.SyncServiceCancelRequest, context: Context
    ) -> sync_pb2.SyncServiceCancelResponse:
        job = await asyncio.to_thread(
            self.jobs.request_cancel, parse_job_id(request.job_id), convert.utcnow()
        )
        return sync_pb2.SyncServiceCancelResponse(job=job_to_proto(job))

    async def List(
        self, request: sync_pb2.SyncServiceListRequest, context: Context
    ) -> sync_pb2.SyncServiceListResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidRequest("page_size", f"must be 0..{MAX_PAGE_SIZE} (0 means 50)")
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        states: list[JobState] = []
        for index, number in enumerate(request.states):
            if number not in _STATES:
                raise InvalidRequest(f"states[{index}]", f"unknown job state {number}")
            states.append(_STATES[number])
        before = parse_job_id(request.page_token, "page_token") if request.page_token else None
        jobs = await asyncio.to_thread(
            self.jobs.list_jobs,
            adapter_id=request.adapter_id.strip() or None,
            states=states,
            limit=page_size + 1,
            before_id=before,
        )
        page = jobs[:page_size]
        answer = sync_pb2.SyncServiceListResponse(jobs=[job_to_proto(job) for job in page])
        if len(jobs) > page_size:
            answer.next_page_token = str(page[-1].job_id)
        return answer
