"""Issue 17 (security, second pass), each item tried through the real hub in production
(mTLS) mode, on SQLite and PostgreSQL: what minimized answers leak, hostile values
that once answered INTERNAL or UNAVAILABLE, and the CRL that failed open."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domain.records import content_hash
from domain.subjects import KeyKind, parse_key
from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from exchange.server import HubServer

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
PURPOSE = common_pb2.Purpose(case_id="C-1", reason="企业开办 核验")


def lookup_request(**changes) -> exchange_pb2.LookupRequest:
    request = exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE)
    for name, value in changes.items():
        if isinstance(value, str):
            setattr(request, name, value)
        else:
            getattr(request, name).CopyFrom(value)
    return request


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def violated_field(error: grpc.aio.AioRpcError) -> str:
    """The field named by the BadRequest detail of an INVALID_ARGUMENT status."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    status = rpc_status.from_call(error)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    return bad.field_violations[0].field


# --- §1: the content hash covers only what the caller receives ------------------------


async def test_the_content_hash_covers_only_the_returned_fields(channel_for, secure_hub):
    answer = await exchange_pb2_grpc.ExchangeServiceStub(channel_for("hall")).Lookup(
        lookup_request()
    )
    (record,) = answer.records
    returned = json_format.MessageToDict(record.fields)
    assert set(returned) == {"name", "birth_date"}
    assert record.provenance.content_hash == content_hash(returned)
    subject = parse_key(KeyKind.ID_CARD, PERSON.value)
    hub = secure_hub.hub
    for _ in range(100):  # the store write follows the answer
        stored = await asyncio.to_thread(hub.records.find, subject, ("population.resident",))
        if stored:
            break
        await asyncio.sleep(0.05)
    (full,) = stored
    assert len(full.fields) == 6
    assert full.content_hash == content_hash(full.fields) != record.provenance.content_hash


# --- §2 and §3: hostile values are INVALID_ARGUMENT naming the field -----------------

NUL_LOOKUPS = [
    (
        "case id",
        lookup_request(purpose=common_pb2.Purpose(case_id="x\x00y", reason="企业开办")),
        "purpose.case_id",
    ),
    (
        "reason",
        lookup_request(purpose=common_pb2.Purpose(case_id="C", reason="企业开办\x1b[2J")),
        "purpose.reason",
    ),
    (
        "subject",
        lookup_request(
            subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="1101\x00")
        ),
        "subject.value",
    ),
    (
        "record type",
        exchange_pb2.LookupRequest(
            subject=PERSON, purpose=PURPOSE, record_types=["population.resident\x7f"]
        ),
        "record_types[0]",
    ),
    (
        "huge staleness",
        lookup_request(max_staleness=duration_pb2.Duration(seconds=10**11)),
        "max_staleness",
    ),
    (
        "10,000 years",
        lookup_request(max_staleness=duration_pb2.Duration(seconds=315_576_000_000)),
        "max_staleness",
    ),
    (
        "duration out of range",
        lookup_request(max_staleness=duration_pb2.Duration(seconds=10**15)),
        "max_staleness",
    ),
    (
        "mixed signs",
        lookup_request(max_staleness=duration_pb2.Duration(seconds=5, nanos=-1)),
        "max_staleness",
    ),
]


@pytest.mark.parametrize(
    ("request_", "field"), [c[1:] for c in NUL_LOOKUPS], ids=[c[0] for c in NUL_LOOKUPS]
)
async def test_hostile_lookup_values_are_invalid_argument(channel_for, request_, field):
    error = await refused(
        exchange_pb2_grpc.ExchangeServiceStub(channel_for("hall")).Lookup(request_)
    )
    assert violated_field(error) == field


def _struct(**values) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    for name, value in values.items():
        message.fields[name].number_value = value
    return message


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
async def test_non_finite_numbers_in_structs_are_invalid_argument(channel_for, dev_channel, number):
    spec = adapters_pb2.AdapterSpec(
        adapter_id="county.population",
        department="县公安局",
        department_uscc="11320100MB0000000J",
        kind=adapters_pb2.ADAPTER_KIND_HTTP,
        settings=_struct(max_rows=number),
    )
    for channel in (channel_for("psb"), dev_channel):
        registry = adapters_pb2_grpc.AdapterRegistryStub(channel)
        error = await refused(registry.Register(adapters_pb2.RegisterRequest(spec=spec)))
        assert violated_field(error) == "spec.settings.max_rows"
    certificates = certificates_pb2_grpc.CertificateServiceStub(dev_channel)
    error = await refused(
        certificates.Issue(
            certificates_pb2.IssueRequest(
                request_id="r-1", type_code="X", holder=PERSON, fields=_struct(capital=number)
            )
        )
    )
    assert violated_field(error) == "fields.capital"


@pytest.fixture
async def dev_channel(database_url, tmp_path):
    """A dev-mode hub (anonymous callers allowed) on the example configuration."""
    from exchange.hub import Hub
    from exchange.settings import load_settings

    settings = load_settings(
        EXAMPLE, data_dir=str(tmp_path / "dev"), **{"database.url": database_url}
    )
    server = HubServer(Hub.open(settings), "127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel
    await server.stop(grace=0.5)


async def test_ids_and_page_tokens_that_no_store_holds_are_invalid_argument(channel_for):
    registry = adapters_pb2_grpc.AdapterRegistryStub(channel_for("psb"))
    for call in (
        registry.Deregister(adapters_pb2.DeregisterRequest(adapter_id="a\x00b")),
        registry.Heartbeat(adapters_pb2.HeartbeatRequest(adapter_id="a\x00b")),
    ):
        assert violated_field(await refused(call)) == "adapter_id"
    auditor = audit_pb2_grpc.AuditServiceStub(channel_for("auditor"))
    for token in ("9" * 30, "9223372036854775808", "-1", "1e3"):
        error = await refused(
            auditor.ListAccess(audit_pb2.ListAccessRequest(subject=PERSON, page_token=token))
        )
        assert violated_field(error) == "page_token"
    for since in (
        timestamp_pb2.Timestamp(seconds=10**15),
        timestamp_pb2.Timestamp(seconds=-(10**15)),
        timestamp_pb2.Timestamp(seconds=0, nanos=-1),
    ):
        error = await refused(
            auditor.ListAccess(audit_pb2.ListAccessRequest(subject=PERSON, since=since))
        )
        assert violated_field(error) == "since"
    # The largest token a store can hold is still a token: an empty page, not an error.
    answer = await auditor.ListAccess(
        audit_pb2.ListAccessRequest(subject=PERSON, page_token=str(2**63 - 1))
    )
    assert list(answer.entries) == []


async def test_a_bad_caller_cannot_fail_good_callers(channel_for):
    """One caller keeps sending NUL (which PostgreSQL refuses) while others look up: every
    good lookup is answered, every bad one refused at the door."""
    good = exchange_pb2_grpc.ExchangeServiceStub(channel_for("hall"))
    bad = exchange_pb2_grpc.ExchangeServiceStub(channel_for("hall"))
    poisoned = lookup_request(purpose=common_pb2.Purpose(case_id="x\x00y", reason="企业开办"))

    async def good_caller() -> int:
        answered = 0
        for _ in range(15):
            answer = await good.Lookup(lookup_request())
            answered += len(answer.records) == 1
        return answered

    async def bad_caller() -> set[grpc.StatusCode]:
        codes = set()
        for _ in range(30):
            codes.add((await refused(bad.Lookup(poisoned))).code())
        return codes

    results = await asyncio.gather(*(good_caller() for _ in range(4)), bad_caller(), bad_caller())
    assert results[:4] == [15, 15, 15, 15]
    assert results[4] == results[5] == {grpc.StatusCode.INVALID_ARGUMENT}


# --- §4: the CRL fails closed --------------------------------------------------------


async def test_a_deleted_or_corrupt_crl_keeps_revoked_certificates_out(
    channel_for, pki, secure_hub
):
    revoked = exchange_pb2_grpc.ExchangeServiceStub(channel_for("revoked"))
    hall = exchange_pb2_grpc.ExchangeServiceStub(channel_for("hall"))
    assert (await refused(revoked.Lookup(lookup_request()))).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    crl = pki.folder / "crl.pem"
    good = crl.read_bytes()
    crl.unlink()
    for _ in range(2):
        error = await refused(revoked.Lookup(lookup_request()))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert len((await hall.Lookup(lookup_request())).records) == 1
    crl.write_bytes(b"-----BEGIN X509 CRL-----\nnot a list\n-----END X509 CRL-----\n")
    error = await refused(revoked.Lookup(lookup_request()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert str(pki.folder) not in (error.details() or "")
    answer = await hall.Lookup(lookup_request())
    assert len(answer.records) == 1
    # An empty list signed by someone else is no list either: the revoked stay revoked.
    from exchange.auth.ca import CertificateAuthority

    other = CertificateAuthority.init(pki.folder.parent / "other-ca")
    crl.write_bytes((other.folder / "crl.pem").read_bytes())
    assert (await refused(revoked.Lookup(lookup_request()))).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    crl.write_bytes(good)


async def test_a_configured_crl_never_loaded_refuses_every_certificate(
    secure_settings, pki, channel_for_settings
):
    (pki.folder / "crl.pem").write_text("garbage", encoding="utf-8")
    open_as = await channel_for_settings(secure_settings)
    error = await refused(
        exchange_pb2_grpc.ExchangeServiceStub(open_as("hall")).Lookup(lookup_request())
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert str(pki.folder) not in (error.details() or "")
    assert "revocation" in (error.details() or "")


@pytest.fixture
async def channel_for_settings(pki):
    """Start a secure hub on given settings; returns a function opening channels to it."""
    started: list[HubServer] = []
    opened: list[grpc.aio.Channel] = []

    async def start(settings):
        from exchange.hub import Hub

        server = HubServer(Hub.open(settings), "127.0.0.1:0")
        await server.start()
        started.append(server)
        root = (pki.folder / "ca.crt").read_bytes()

        def open_as(who: str) -> grpc.aio.Channel:
            files = pki.clients[who]
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root,
                private_key=files.private_key.read_bytes(),
                certificate_chain=files.certificate.read_bytes(),
            )
            channel = grpc.aio.secure_channel(f"localhost:{server.port}", credentials)
            opened.append(channel)
            return channel

        return open_as

    yield start
    for channel in opened:
        await channel.close()
    for server in started:
        await server.stop(grace=0.5)
