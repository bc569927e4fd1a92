"""ExchangeService and the server's plumbing, through the real server and generated stubs."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from adapters.base import Adapter, AdapterSpec
from adapters.demo import PopulationRegistry
from certstore.records import RecordRepository
from domain.subjects import KeyKind, parse_key
from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from exchange.server import SERVICE_NAMES

PURPOSE = common_pb2.Purpose(case_id="CASE-1", reason="business registration")
GB_EXAMPLE_ID = "11010519491231002X"


def lookup_request(kind: int, value: str, **extra: object) -> exchange_pb2.LookupRequest:
    return exchange_pb2.LookupRequest(
        subject=common_pb2.SubjectKey(kind=kind, value=value), purpose=PURPOSE, **extra
    )


async def test_lookup_by_id_card_returns_and_stores_the_record(start_hub, settings):
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        response = await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
            lookup_request(common_pb2.KEY_KIND_ID_CARD, "１１０１０５１９４９１２３１００２ｘ"),
            timeout=5,
        )
    await server.hub.writer.flush()
    assert response.subject.value == GB_EXAMPLE_ID
    assert [s.adapter_id for s in response.sources] == ["psb.population"]
    assert response.sources[0].outcome == common_pb2.SOURCE_OUTCOME_OK
    assert not response.partial
    (record,) = response.records
    assert record.record_type == "population.resident"
    assert record.fields["birth_date"] == "1949-12-31"
    assert record.provenance.adapter_id == "psb.population"
    assert record.provenance.content_hash.startswith("sha256:")
    assert response.request_id

    from certstore.database import Database

    database = Database.from_url(settings.database_url)
    try:
        stored = RecordRepository(database).find(parse_key(KeyKind.ID_CARD, GB_EXAMPLE_ID), None)
    finally:
        database.dispose()
    assert [r.source_record_id for r in stored] == [record.provenance.source_record_id]
    assert stored[0].content_hash == record.provenance.content_hash


async def test_org_code_lookup_reaches_uscc_sources_and_vice_versa(hub_channel):
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    by_uscc = await stub.Lookup(lookup_request(common_pb2.KEY_KIND_USCC, "91350100M000100Y43"))
    by_org = await stub.Lookup(lookup_request(common_pb2.KEY_KIND_ORG_CODE, "M000100Y4"))
    assert by_org.subject.value == "M000100Y-4"
    assert by_uscc.records[0].fields["organization_code"] == "M000100Y-4"
    assert by_uscc.records[0].fields["name"] == by_org.records[0].fields["name"]


async def test_record_types_filter_and_unknown_record_type(hub_channel):
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    response = await stub.Lookup(
        lookup_request(
            common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID, record_types=["market.business_license"]
        )
    )
    assert list(response.sources) == []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Lookup(
            lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID, record_types=["no.such"])
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "record_types[0]" in raised.value.details()


def _violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry google.rpc details"
    found = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        found.extend((v.field, v.description) for v in bad.field_violations)
    return found


BAD_REQUESTS = [
    ("no subject", exchange_pb2.LookupRequest(purpose=PURPOSE), "subject"),
    (
        "no purpose",
        exchange_pb2.LookupRequest(
            subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=GB_EXAMPLE_ID)
        ),
        "purpose",
    ),
    (
        "empty case id",
        exchange_pb2.LookupRequest(
            subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=GB_EXAMPLE_ID),
            purpose=common_pb2.Purpose(reason="x"),
        ),
        "purpose.case_id",
    ),
    (
        "empty reason",
        exchange_pb2.LookupRequest(
            subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=GB_EXAMPLE_ID),
            purpose=common_pb2.Purpose(case_id="C-1", reason="   "),
        ),
        "purpose.reason",
    ),
    ("unspecified kind", lookup_request(0, GB_EXAMPLE_ID), "subject.kind"),
    ("unknown enum value", lookup_request(99, GB_EXAMPLE_ID), "subject.kind"),
    (
        "bad check char",
        lookup_request(common_pb2.KEY_KIND_ID_CARD, "110105194912310021"),
        "subject.value",
    ),
    (
        "future birth",
        lookup_request(common_pb2.KEY_KIND_ID_CARD, "110105209912310023"),
        "subject.value",
    ),
    ("oversized key", lookup_request(common_pb2.KEY_KIND_USCC, "9" * 10_000), "subject.value"),
    (
        "oversized case id",
        exchange_pb2.LookupRequest(
            subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=GB_EXAMPLE_ID),
            purpose=common_pb2.Purpose(case_id="C" * 5000, reason="x"),
        ),
        "purpose.case_id",
    ),
    (
        "negative staleness",
        lookup_request(
            common_pb2.KEY_KIND_ID_CARD,
            GB_EXAMPLE_ID,
            max_staleness={"seconds": -5},
        ),
        "max_staleness",
    ),
]


@pytest.mark.parametrize(
    ("request_message", "field"), [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    hub_channel, request_message, field
):
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Lookup(request_message, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in _violations(raised.value)] == [field]
    health = health_pb2_grpc.HealthStub(hub_channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_malformed_protobuf_bytes_are_invalid_argument(hub_channel):
    call = hub_channel.unary_unary(
        "/tongban.v1.ExchangeService/Lookup",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"\x0a\xff\xff\xff\xff\x0f", timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in _violations(raised.value)] == ["request"]


async def test_request_id_is_echoed_in_trailing_metadata(hub_channel):
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    call = stub.Lookup(
        lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID),
        metadata=(("x-request-id", "hall-42-abc"),),
    )
    response = await call
    assert response.request_id == "hall-42-abc"
    assert ("x-request-id", "hall-42-abc") in tuple(await call.trailing_metadata())


@pytest.mark.parametrize("sent", [None, "has spaces", "x" * 65], ids=["none", "spaces", "too long"])
async def test_a_call_without_a_usable_request_id_gets_a_fresh_one(hub_channel, sent):
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    metadata = () if sent is None else (("x-request-id", sent),)
    given = set()
    for _ in range(3):
        call = stub.Lookup(
            lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID), metadata=metadata
        )
        response = await call
        assert re.fullmatch(r"[0-9a-f]{32}", response.request_id)
        assert ("x-request-id", response.request_id) in tuple(await call.trailing_metadata())
        given.add(response.request_id)
    assert len(given) == 3


class _Stalling(Adapter):
    async def _fetch(self, subject, record_types, purpose):
        await asyncio.sleep(3600)
        return []


class _Broken(Adapter):
    async def _fetch(self, subject, record_types, purpose):
        raise ConnectionRefusedError("department system down")


def _spec(adapter_id: str, timeout: float = 30.0) -> AdapterSpec:
    return AdapterSpec(
        adapter_id=adapter_id,
        kind="python",
        department=f"{adapter_id} department",
        serves={"population.resident": frozenset({KeyKind.ID_CARD})},
        timeout=timeout,
    )


async def test_a_stalled_and_a_broken_source_never_fail_the_lookup(start_hub):
    healthy = PopulationRegistry(_spec("psb.population"))
    server = await start_hub([_Stalling(_spec("stalled")), healthy, _Broken(_spec("broken"))])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        # The client enforces the 1 s deadline: an answer at all is an answer in time.
        response = await stub.Lookup(
            lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID), timeout=1.0
        )
    outcomes = {s.adapter_id: s.outcome for s in response.sources}
    assert outcomes == {
        "stalled": common_pb2.SOURCE_OUTCOME_TIMEOUT,
        "psb.population": common_pb2.SOURCE_OUTCOME_OK,
        "broken": common_pb2.SOURCE_OUTCOME_ERROR,
    }
    assert response.partial
    assert [r.provenance.adapter_id for r in response.records] == ["psb.population"]
    broken = next(s for s in response.sources if s.adapter_id == "broken")
    assert "ConnectionRefusedError" in broken.detail


async def test_batch_lookup_streams_every_subject_with_its_index(hub_channel):
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    subjects = [
        common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=GB_EXAMPLE_ID),
        common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="not-an-id"),
        common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value="91350100M000100Y43"),
    ]
    answers = [
        a
        async for a in stub.BatchLookup(
            exchange_pb2.BatchLookupRequest(subjects=subjects, purpose=PURPOSE), timeout=5
        )
    ]
    by_index = {a.index: a for a in answers}
    assert sorted(by_index) == [0, 1, 2]
    assert by_index[0].result.records[0].record_type == "population.resident"
    assert by_index[1].WhichOneof("outcome") == "error"
    assert by_index[1].error.code == "INVALID_ARGUMENT"
    assert by_index[1].error.field == "subjects[1].value"
    assert by_index[2].result.records[0].record_type == "market.business_license"


async def test_adapter_registry_lists_configured_adapters(hub_channel):
    stub = adapters_pb2_grpc.AdapterRegistryStub(hub_channel)
    listed = await stub.List(adapters_pb2.ListRequest())
    assert [a.spec.adapter_id for a in listed.adapters] == ["psb.population", "amr.business"]
    only = await stub.List(adapters_pb2.ListRequest(record_type="population.resident"))
    assert [a.spec.adapter_id for a in only.adapters] == ["psb.population"]


PENDING_CALLS = [
    (
        "DepartmentAdapter.Fetch",
        lambda ch: adapters_pb2_grpc.DepartmentAdapterStub(ch).Fetch(adapters_pb2.FetchRequest()),
    ),
    (
        "DepartmentAdapter.Changes",
        lambda ch: (
            adapters_pb2_grpc.DepartmentAdapterStub(ch)
            .Changes(adapters_pb2.ChangesRequest())
            .read()
        ),
    ),
]


@pytest.mark.parametrize("call", [c[1] for c in PENDING_CALLS], ids=[c[0] for c in PENDING_CALLS])
async def test_capabilities_not_built_yet_say_so(hub_channel, call):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(hub_channel)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "not available" in raised.value.details()


async def test_health_and_reflection_list_every_service(hub_channel):
    health = health_pb2_grpc.HealthStub(hub_channel)
    for name in ("", *SERVICE_NAMES):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
    stub = reflection_pb2_grpc.ServerReflectionStub(hub_channel)
    responses = [
        r
        async for r in stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    ]
    listed = {s.name for s in responses[0].list_services_response.service}
    assert set(SERVICE_NAMES) <= listed
    assert {n for n in listed if n.startswith("tongban.v1.")} == {
        "tongban.v1.ExchangeService",
        "tongban.v1.AdapterRegistry",
        "tongban.v1.DepartmentAdapter",
        "tongban.v1.CertificateService",
        "tongban.v1.VerificationService",
        "tongban.v1.SyncService",
        "tongban.v1.AuditService",
        "tongban.v1.CatalogService",
        "tongban.v1.AccessService",
    }


class _Slow(Adapter):
    async def _fetch(self, subject, record_types, purpose):
        await asyncio.sleep(0.5)
        return await PopulationRegistry(self.spec)._fetch(subject, record_types, purpose)


async def test_shutdown_lets_in_flight_calls_finish(start_hub):
    server = await start_hub([_Slow(_spec("slow"))])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        in_flight = asyncio.ensure_future(
            stub.Lookup(lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID), timeout=5)
        )
        await asyncio.sleep(0.1)
        await server.stop(grace=5)
        response = await in_flight
    assert response.sources[0].outcome == common_pb2.SOURCE_OUTCOME_OK
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
                lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID), timeout=1
            )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


class _Switchable(Adapter):
    """Answers like the population registry until `down` is set, then refuses."""

    down = False

    async def _fetch(self, subject, record_types, purpose):
        if self.down:
            raise ConnectionRefusedError("department system down")
        return await PopulationRegistry(self.spec)._fetch(subject, record_types, purpose)


async def test_stored_copy_is_served_stale_only_when_the_caller_allows_it(start_hub):
    source = _Switchable(_spec("psb.population", timeout=1))
    server = await start_hub([source])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        fresh = await stub.Lookup(lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID))
        source.down = True
        stale = await stub.Lookup(
            lookup_request(
                common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID, max_staleness={"seconds": 600}
            )
        )
        strict = await stub.Lookup(lookup_request(common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID))
        too_old = await stub.Lookup(
            lookup_request(
                common_pb2.KEY_KIND_ID_CARD, GB_EXAMPLE_ID, max_staleness={"nanos": 1000}
            )
        )
    assert fresh.sources[0].outcome == common_pb2.SOURCE_OUTCOME_OK
    assert stale.sources[0].outcome == common_pb2.SOURCE_OUTCOME_STALE_SERVED
    assert "department system down" in stale.sources[0].detail
    assert stale.partial
    (record,) = stale.records
    assert record.stale
    assert record.fields == fresh.records[0].fields
    assert record.provenance.fetched_at == fresh.records[0].provenance.fetched_at
    assert strict.sources[0].outcome == common_pb2.SOURCE_OUTCOME_ERROR
    assert list(strict.records) == []
    assert too_old.sources[0].outcome == common_pb2.SOURCE_OUTCOME_ERROR
