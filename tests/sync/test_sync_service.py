"""`tongban.v1.SyncService` on a real in-process hub: start, watch to the end, cancel,
list, schedules run by the hub, and every bad request answered with its status."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from conftest import StartHub
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sync_testkit import (
    FILE_ADAPTER,
    SQL_ADAPTER,
    T0,
    SqlSource,
    rows,
    write_export,
)

from certstore.database import Database
from certstore.sync_jobs import SyncJobRepository
from exchange.generated import sync_pb2, sync_pb2_grpc

FULL = sync_pb2.SYNC_MODE_FULL
INCREMENTAL = sync_pb2.SYNC_MODE_INCREMENTAL
RUNNING = sync_pb2.SYNC_JOB_STATE_RUNNING
SUCCEEDED = sync_pb2.SYNC_JOB_STATE_SUCCEEDED
CANCELLED = sync_pb2.SYNC_JOB_STATE_CANCELLED


@pytest.fixture
async def stub(start_hub: StartHub) -> AsyncIterator[sync_pb2_grpc.SyncServiceStub]:
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield sync_pb2_grpc.SyncServiceStub(channel)


async def watch(stub: sync_pb2_grpc.SyncServiceStub, job_id: str) -> list[sync_pb2.SyncJob]:
    request = sync_pb2.SyncServiceWatchRequest(job_id=job_id)
    return [answer.job async for answer in stub.Watch(request, timeout=60)]


async def test_a_started_job_is_run_by_the_hub_and_watched_to_its_end(
    stub: sync_pb2_grpc.SyncServiceStub, tmp_path: Path
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(3000))

    started = await stub.Start(sync_pb2.SyncServiceStartRequest(adapter_id=FILE_ADAPTER, mode=FULL))
    updates = await watch(stub, started.job.job_id)

    assert started.job.state == sync_pb2.SYNC_JOB_STATE_PENDING
    assert (started.job.trigger, started.job.mode) == ("manual", FULL)
    last = updates[-1]
    assert last.state == SUCCEEDED
    assert (last.progress.records_seen, last.progress.applied) == (3000, 3000)
    assert last.worker
    assert last.HasField("started_at")
    assert last.HasField("finished_at")
    seen = [update.progress.records_seen for update in updates]
    assert seen == sorted(seen)
    got = await stub.Get(sync_pb2.SyncServiceGetRequest(job_id=started.job.job_id))
    assert got.job == last


async def test_watch_streams_rate_and_eta_when_the_source_knows_its_total(
    start_hub: StartHub, tmp_path: Path
) -> None:
    source = SqlSource(f"sqlite:///{tmp_path / 'dept.db'}")
    source.insert(rows(3000), at=T0)
    source.dispose()
    # Twelve batches over about three seconds: Watch, polling twice a second, sees
    # several of them however late the job is claimed on a busy machine.
    server = await start_hub(batch_size=250, max_records_per_second=1000)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        started = await stub.Start(
            sync_pb2.SyncServiceStartRequest(adapter_id=SQL_ADAPTER, mode=INCREMENTAL)
        )
        updates = await watch(stub, started.job.job_id)

    running = [u for u in updates if u.state == RUNNING and u.progress.HasField("eta")]
    assert running, "a RUNNING update with an ETA"
    for update in running:
        progress = update.progress
        assert progress.total_estimate == 3000
        assert progress.records_per_second > 0
        left = (progress.total_estimate - progress.records_seen) / progress.records_per_second
        assert progress.eta.ToTimedelta().total_seconds() == pytest.approx(left, abs=1e-3)
    assert updates[-1].state == SUCCEEDED
    assert not updates[-1].progress.HasField("eta")


async def test_cancel_stops_a_running_job_at_a_batch_boundary(
    start_hub: StartHub, database_url: str, tmp_path: Path
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(5000))
    server = await start_hub(batch_size=200, max_records_per_second=2000)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        started = await stub.Start(sync_pb2.SyncServiceStartRequest(adapter_id=FILE_ADAPTER))
        job_id = started.job.job_id
        async for answer in stub.Watch(sync_pb2.SyncServiceWatchRequest(job_id=job_id)):
            if answer.job.progress.records_seen >= 600:
                break

        flagged = await stub.Cancel(sync_pb2.SyncServiceCancelRequest(job_id=job_id))
        final = (await watch(stub, job_id))[-1]

    assert flagged.job.state == RUNNING
    assert final.state == CANCELLED
    assert 600 <= final.progress.records_seen < 5000
    assert final.progress.records_seen % 200 == 0
    database = Database.from_url(database_url)
    cursor = SyncJobRepository(database).adapter_cursor(FILE_ADAPTER)
    database.dispose()
    assert cursor == f"enrolment-0001.csv:{final.progress.records_seen}"


async def test_list_filters_by_adapter_and_state_and_pages(
    stub: sync_pb2_grpc.SyncServiceStub, tmp_path: Path
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(10))
    ids = []
    for adapter in (FILE_ADAPTER, FILE_ADAPTER, FILE_ADAPTER):
        started = await stub.Start(sync_pb2.SyncServiceStartRequest(adapter_id=adapter))
        await watch(stub, started.job.job_id)
        ids.append(started.job.job_id)

    first = await stub.List(sync_pb2.SyncServiceListRequest(page_size=2))
    rest = await stub.List(
        sync_pb2.SyncServiceListRequest(page_size=2, page_token=first.next_page_token)
    )
    succeeded = await stub.List(
        sync_pb2.SyncServiceListRequest(adapter_id=FILE_ADAPTER, states=[SUCCEEDED])
    )
    none = await stub.List(sync_pb2.SyncServiceListRequest(adapter_id=SQL_ADAPTER))

    assert [job.job_id for job in [*first.jobs, *rest.jobs]] == ids[::-1]
    assert rest.next_page_token == ""
    assert len(succeeded.jobs) == 3
    assert list(none.jobs) == []


async def test_the_hub_runs_configured_schedules(
    start_hub: StartHub, database_url: str, tmp_path: Path
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(100))
    schedule = {"name": "every-second", "adapter": FILE_ADAPTER, "every_seconds": 1}
    await start_hub(schedules=[schedule])
    database = Database.from_url(database_url)
    jobs = SyncJobRepository(database)

    for _ in range(100):
        done = [job for job in jobs.list_jobs() if job.state.finished]
        if len(done) >= 2:
            break
        await asyncio.sleep(0.1)
    database.dispose()

    assert len(done) >= 2
    assert {job.trigger for job in done} == {"schedule:every-second"}
    ticks = sorted(job.scheduled_for for job in done if job.scheduled_for is not None)
    assert len(set(ticks)) == len(ticks)
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    assert done[-1].progress.applied == 100


BAD_REQUESTS = [
    ("Start", sync_pb2.SyncServiceStartRequest(), "INVALID_ARGUMENT", "adapter_id"),
    (
        "Start",
        sync_pb2.SyncServiceStartRequest(adapter_id=FILE_ADAPTER, mode=7),  # type: ignore[arg-type]
        "INVALID_ARGUMENT",
        "mode",
    ),
    ("Start", sync_pb2.SyncServiceStartRequest(adapter_id="no.such"), "NOT_FOUND", None),
    ("Get", sync_pb2.SyncServiceGetRequest(), "INVALID_ARGUMENT", "job_id"),
    ("Get", sync_pb2.SyncServiceGetRequest(job_id="abc"), "INVALID_ARGUMENT", "job_id"),
    ("Get", sync_pb2.SyncServiceGetRequest(job_id="-3"), "INVALID_ARGUMENT", "job_id"),
    ("Get", sync_pb2.SyncServiceGetRequest(job_id="424242"), "NOT_FOUND", None),
    ("Cancel", sync_pb2.SyncServiceCancelRequest(job_id="424242"), "NOT_FOUND", None),
    ("Cancel", sync_pb2.SyncServiceCancelRequest(job_id="x"), "INVALID_ARGUMENT", "job_id"),
    ("List", sync_pb2.SyncServiceListRequest(page_size=201), "INVALID_ARGUMENT", "page_size"),
    ("List", sync_pb2.SyncServiceListRequest(page_size=-1), "INVALID_ARGUMENT", "page_size"),
    (
        "List",
        sync_pb2.SyncServiceListRequest(states=[42]),  # type: ignore[list-item]
        "INVALID_ARGUMENT",
        "states[0]",
    ),
    ("List", sync_pb2.SyncServiceListRequest(page_token="zz"), "INVALID_ARGUMENT", "page_token"),
]


@pytest.mark.parametrize(
    ("method", "request_message", "code", "field"),
    BAD_REQUESTS,
    ids=[f"{method}-{code}-{field}" for method, _, code, field in BAD_REQUESTS],
)
async def test_bad_requests_get_their_status_and_name_the_field(
    stub: sync_pb2_grpc.SyncServiceStub,
    method: str,
    request_message: object,
    code: str,
    field: str | None,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, method)(request_message)

    assert raised.value.code().name == code
    if field is not None:
        status = rpc_status.from_call(raised.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert [violation.field for violation in bad.field_violations] == [field]


async def test_watch_of_an_unknown_job_is_not_found(stub: sync_pb2_grpc.SyncServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await watch(stub, "424242")

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancelling_an_ended_job_is_a_failed_precondition(
    stub: sync_pb2_grpc.SyncServiceStub, tmp_path: Path
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(5))
    started = await stub.Start(sync_pb2.SyncServiceStartRequest(adapter_id=FILE_ADAPTER))
    await watch(stub, started.job.job_id)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Cancel(sync_pb2.SyncServiceCancelRequest(job_id=started.job.job_id))

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ended already (SUCCEEDED)" in (raised.value.details() or "")
