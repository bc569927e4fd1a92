"""`tongban.v1.SyncService`: start, watch and cancel adapter sync jobs.

Jobs live in the store, so any node answers for any job: Start adds a PENDING job that
some node's worker claims within `sync.poll_seconds`, Cancel flags it for whichever
node runs it (it stops at its next batch boundary, cursor committed), and Watch
follows the job's row until the job ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from domain.errors import InvalidRequest
from domain.sync_jobs import JobState, SyncJob, SyncMode
from exchange.app.sync import SyncService, can_stream_changes, parse_job_id
from exchange.generated import sync_pb2, sync_pb2_grpc
from exchange.hub import Hub
from exchange.services import convert
from exchange.services.context import CallContext

__all__ = ["SyncServicer", "can_stream_changes", "job_to_proto", "parse_job_id"]

Context = grpc.aio.ServicerContext[Any, Any]


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


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    """Translation around `exchange.app.sync.SyncService`."""

    def __init__(self, hub: Hub) -> None:
        self.sync = SyncService(hub)

    async def Start(
        self, request: sync_pb2.SyncServiceStartRequest, context: CallContext
    ) -> sync_pb2.SyncServiceStartResponse:
        if not request.adapter_id.strip():
            raise InvalidRequest("adapter_id", "required")
        if request.mode == sync_pb2.SYNC_MODE_UNSPECIFIED:
            mode = SyncMode.INCREMENTAL
        elif request.mode in _MODES:
            mode = _MODES[request.mode]
        else:
            raise InvalidRequest(
                "mode", f"unknown mode {request.mode}: SYNC_MODE_FULL or SYNC_MODE_INCREMENTAL"
            )
        job = await self.sync.start(request.adapter_id, mode)
        return sync_pb2.SyncServiceStartResponse(job=job_to_proto(job))

    async def Get(
        self, request: sync_pb2.SyncServiceGetRequest, context: CallContext
    ) -> sync_pb2.SyncServiceGetResponse:
        job = await self.sync.get(parse_job_id(request.job_id))
        return sync_pb2.SyncServiceGetResponse(job=job_to_proto(job))

    async def Watch(
        self, request: sync_pb2.SyncServiceWatchRequest, context: CallContext
    ) -> AsyncIterator[sync_pb2.SyncServiceWatchResponse]:
        async for job in self.sync.watch(parse_job_id(request.job_id)):
            yield sync_pb2.SyncServiceWatchResponse(job=job_to_proto(job))

    async def Cancel(
        self, request: sync_pb2.SyncServiceCancelRequest, context: CallContext
    ) -> sync_pb2.SyncServiceCancelResponse:
        job = await self.sync.cancel(parse_job_id(request.job_id))
        return sync_pb2.SyncServiceCancelResponse(job=job_to_proto(job))

    async def List(
        self, request: sync_pb2.SyncServiceListRequest, context: CallContext
    ) -> sync_pb2.SyncServiceListResponse:
        states: list[JobState] = []
        for index, number in enumerate(request.states):
            if number not in _STATES:
                raise InvalidRequest(f"states[{index}]", f"unknown job state {number}")
            states.append(_STATES[number])
        page = await self.sync.list(
            adapter_id=request.adapter_id,
            states=states,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return sync_pb2.SyncServiceListResponse(
            jobs=[job_to_proto(job) for job in page.jobs], next_page_token=page.next_page_token
        )
