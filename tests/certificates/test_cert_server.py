"""E-certificates through a real hub server: issue, verify online and offline, change status.

Offline verification here is what a verifier without the hub does: load the signed
trust bundle and status list from GetTrustBundle against the pinned root key, then
run `signing.Verifier` on the token.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from cert_testkit import (
    AMR,
    COMPANY,
    LICENCE,
    SUITES,
    StartServer,
    all_tokens,
    bad_field,
    certificates,
    failed_checks,
    licence_fields,
    licence_issue,
    rpc_error,
    settings_for,
    stamp,
    struct,
    verification,
)

from exchange.generated import certificates_pb2, common_pb2, verification_pb2
from exchange.server import HubServer
from exchange.settings import Settings
from signing import (
    Algorithm,
    Certificate,
    StatusList,
    TrustBundle,
    Verdict,
    Verifier,
    certificate_id,
    generate,
)

Channel = grpc.aio.Channel


@dataclass
class Offline:
    """What a verifier downloaded from GetTrustBundle, loaded against the pinned root."""

    root_jwk: dict[str, Any]
    bundle: TrustBundle
    status_list: StatusList

    def verify(self, token: str) -> Verdict:
        return Verifier.from_bundle(self.bundle, self.status_list).verify(token)


async def download(channel: Channel, previous: Offline | None = None) -> Offline:
    answer = await verification(channel).GetTrustBundle(verification_pb2.GetTrustBundleRequest())
    root = json.loads(answer.root_public_jwk)
    if previous is not None:
        assert root == previous.root_jwk, "the root key is pinned"
    now = datetime.now(UTC)
    return Offline(
        root,
        TrustBundle.load(answer.trust_bundle, root, now),
        StatusList.load(answer.status_list, root, now),
    )


async def issue(channel: Channel, **extra: Any) -> certificates_pb2.Certificate:
    answer = await certificates(channel).Issue(licence_issue(**extra))
    return answer.certificate


async def verify_token(channel: Channel, token: str) -> verification_pb2.Verdict:
    answer = await verification(channel).Verify(verification_pb2.VerifyRequest(token=token))
    return answer.verdict


def offline_failures(verdict: Verdict) -> list[str]:
    return [c.name.value for c in verdict.failures]


async def test_issue_verify_revoke_verify_online_and_offline(channel: Channel) -> None:
    certificate = await issue(channel)
    offline = await download(channel)

    assert (await verify_token(channel, certificate.token)).valid
    by_id = await verification(channel).Verify(
        verification_pb2.VerifyRequest(certificate_id=certificate.id)
    )
    assert by_id.verdict.valid
    assert by_id.verdict.certificate.status == certificates_pb2.CERTIFICATE_STATUS_VALID
    by_qr = await verification(channel).Verify(
        verification_pb2.VerifyRequest(qr_text=f"  {certificate.token}\n")
    )
    assert by_qr.verdict.valid
    assert offline.verify(certificate.token).valid

    revoked = await certificates(channel).Revoke(
        certificates_pb2.RevokeRequest(certificate_id=certificate.id, reason="以欺骗手段取得登记")
    )
    assert revoked.certificate.status == certificates_pb2.CERTIFICATE_STATUS_REVOKED

    online = await verify_token(channel, certificate.token)
    assert failed_checks(online) == ["STATUS"]
    assert "以欺骗手段取得登记" in next(c.reason for c in online.checks if not c.passed)
    # Offline with the list downloaded before the revocation, the revocation is unseen:
    # that is why lists expire and verifiers refresh them.
    assert offline.verify(certificate.token).valid
    refreshed = await download(channel, offline)
    assert offline_failures(refreshed.verify(certificate.token)) == ["STATUS"]


# What happens to a certificate -> the checks that then fail, online and offline.
STATUS_CASES: list[tuple[str, list[str]]] = [
    ("valid", []),
    ("revoked", ["STATUS"]),
    ("suspended", ["STATUS"]),
    ("suspended-then-reinstated", []),
    ("superseded", ["STATUS"]),
    ("expired", ["VALIDITY_WINDOW"]),
    ("not-yet-valid", ["VALIDITY_WINDOW"]),
]


@pytest.mark.parametrize("cert_settings", SUITES, indirect=True)
@pytest.mark.parametrize(("case", "failing"), STATUS_CASES, ids=[c for c, _ in STATUS_CASES])
async def test_status_table_online_and_offline_after_refresh(
    channel: Channel, case: str, failing: list[str], cert_settings: Settings
) -> None:
    stub = certificates(channel)
    now = datetime.now(UTC)
    extra: dict[str, Any] = {}
    if case == "expired":
        extra = {
            "valid_from": stamp(datetime(2020, 1, 1, tzinfo=UTC)),
            "valid_until": stamp(datetime(2021, 1, 1, tzinfo=UTC)),
        }
    elif case == "not-yet-valid":
        extra = {"valid_from": stamp(now + timedelta(days=30))}
    certificate = await issue(channel, **extra)
    before = await download(channel)
    cid = certificate.id
    if case == "revoked":
        await stub.Revoke(certificates_pb2.RevokeRequest(certificate_id=cid, reason="吊销"))
    elif case.startswith("suspended"):
        await stub.Suspend(certificates_pb2.SuspendRequest(certificate_id=cid, reason="核查中"))
        if case.endswith("reinstated"):
            await stub.Reinstate(certificates_pb2.ReinstateRequest(certificate_id=cid))
    elif case == "superseded":
        successor = await stub.Supersede(
            certificates_pb2.SupersedeRequest(
                certificate_id=cid,
                request_id=uuid.uuid4().hex,
                fields=struct(licence_fields(address="江苏省南京市秦淮区")),
                reason="住所变更",
            )
        )
        assert successor.predecessor.successor_id == successor.certificate.id
        assert (await verify_token(channel, successor.certificate.token)).valid

    after = await download(channel, before)
    tokens = all_tokens(certificate)
    assert len(tokens) == len(cert_settings.type_algorithms(LICENCE))
    for token in tokens:  # every token of a dual-signed certificate, each on its own
        assert failed_checks(await verify_token(channel, token)) == failing
        assert offline_failures(after.verify(token)) == failing
    by_id = await verification(channel).Verify(verification_pb2.VerifyRequest(certificate_id=cid))
    assert failed_checks(by_id.verdict) == failing
    # Which suites verified: one entry per token, in the type's order.
    assert [s.alg for s in by_id.verdict.suites] == list(cert_settings.type_algorithms(LICENCE))
    assert all(s.valid is (not failing) for s in by_id.verdict.suites)


@dataclass(frozen=True)
class KeyEvent:
    name: str
    # rotate | compromise-at-issue | compromise-after-issue | foreign-key
    event: str
    failing: list[str]


KEY_EVENTS = [
    KeyEvent("rotated: the retired key still verifies", "rotate", []),
    KeyEvent("compromised since its issue: fails", "compromise-at-issue", ["KEY_VALID_AT_ISSUE"]),
    KeyEvent("compromised after its issue: holds", "compromise-after-issue", []),
    # Nothing is concluded from claims whose signature failed: the later checks fail
    # as "not checked".
    KeyEvent(
        "signed by a key nobody trusts",
        "foreign-key",
        ["SIGNATURE", "ISSUER_TRUSTED", "KEY_VALID_AT_ISSUE", "STATUS", "VALIDITY_WINDOW"],
    ),
]


@pytest.mark.parametrize("cert_settings", SUITES, indirect=True)
@pytest.mark.parametrize("case", KEY_EVENTS, ids=[c.name for c in KEY_EVENTS])
async def test_rotation_and_compromise_table(
    hub_server: HubServer, channel: Channel, case: KeyEvent, cert_settings: Settings
) -> None:
    """Key events hit the primary key; a dual-signed certificate's second (SM2) token is
    signed by another key and keeps verifying."""
    keys = hub_server.hub.certificates.keys
    primary = Algorithm(cert_settings.type_algorithms(LICENCE)[0])
    certificate = await issue(channel)
    token = certificate.token
    issued_at = certificate.issued_at.ToDatetime(tzinfo=UTC)
    old_kid = keys.ring().active_key(AMR, primary).kid
    if case.event == "rotate":
        await asyncio.to_thread(lambda: keys.rotate(AMR, "test", alg=primary))
    elif case.event == "compromise-at-issue":
        await asyncio.to_thread(keys.compromise, old_kid, issued_at, "test")
    elif case.event == "compromise-after-issue":
        await asyncio.to_thread(keys.compromise, old_kid, issued_at + timedelta(seconds=1), "test")
    else:
        forged = Certificate.from_claims(
            json.loads(_payload(token)) | {"fields": licence_fields(name="冒名公司")}
        )
        token = forged.sign(generate(primary))

    assert failed_checks(await verify_token(channel, token)) == case.failing
    offline = await download(channel)
    assert offline_failures(offline.verify(token)) == case.failing
    for second in all_tokens(certificate)[1:]:
        assert (await verify_token(channel, second)).valid
        assert offline.verify(second).valid
    if case.event != "foreign-key":
        later = await issue(channel)
        for later_token in all_tokens(later):
            assert (await verify_token(channel, later_token)).valid
            assert offline.verify(later_token).valid


def _payload(token: str) -> bytes:
    from signing.base64url import b64url_decode

    return b64url_decode(token.split(".")[1])


@pytest.mark.parametrize("cert_settings", SUITES, indirect=True)
@pytest.mark.parametrize("which", [0, -1], ids=["primary", "last"])
async def test_every_single_character_change_of_a_token_fails(
    channel: Channel, cert_settings: Settings, which: int
) -> None:
    if which and len(cert_settings.type_algorithms(LICENCE)) == 1:
        pytest.skip("single-signed: the last token is the primary, tested already")
    token = all_tokens(await issue(channel))[which]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    tampered = {}
    for position, original in enumerate(token):
        replacement = alphabet[(alphabet.index(original) + 1) % len(alphabet)]
        tampered[str(position)] = token[:position] + replacement + token[position + 1 :]

    async def requests() -> Any:
        for correlation, text in tampered.items():
            yield verification_pb2.VerifyStreamRequest(correlation_id=correlation, token=text)

    answers = [a async for a in verification(channel).VerifyStream(requests())]

    assert len(answers) == len(token)
    assert {a.correlation_id for a in answers} == set(tampered)
    survivors = [a.correlation_id for a in answers if a.HasField("verdict") and a.verdict.valid]
    assert survivors == []
    assert all(failed_checks(a.verdict) for a in answers if a.HasField("verdict"))


async def test_verify_stream_takes_ids_tokens_qr_links_and_reports_bad_requests(
    channel: Channel,
) -> None:
    first, second = await issue(channel), await issue(channel)
    unknown = certificate_id(LICENCE, AMR, "0000000000000000", 1)
    sent = [
        verification_pb2.VerifyStreamRequest(correlation_id="token", token=first.token),
        verification_pb2.VerifyStreamRequest(correlation_id="id", certificate_id=second.id),
        verification_pb2.VerifyStreamRequest(
            correlation_id="qr-link", qr_text=f"https://tongban.example.gov.cn/v/{second.id}"
        ),
        verification_pb2.VerifyStreamRequest(correlation_id="bad-id", certificate_id="1.2.3"),
        verification_pb2.VerifyStreamRequest(correlation_id="unknown", certificate_id=unknown),
        verification_pb2.VerifyStreamRequest(correlation_id="empty"),
        verification_pb2.VerifyStreamRequest(correlation_id="garbage", token="x.y.z"),
    ]

    async def requests() -> Any:
        for request in sent:
            yield request

    received = [a async for a in verification(channel).VerifyStream(requests())]
    assert [a.correlation_id for a in received] == [r.correlation_id for r in sent]
    answers = {a.correlation_id: a for a in received}

    assert answers["token"].verdict.valid
    assert answers["id"].verdict.valid
    assert answers["id"].verdict.certificate.id == second.id
    assert answers["qr-link"].verdict.valid
    assert "certificate_id" in answers["bad-id"].error
    assert "holds no certificate" in answers["unknown"].error
    assert "presented" in answers["empty"].error
    assert failed_checks(answers["garbage"].verdict)[0] == "INTEGRITY"


async def test_trust_bundle_has_the_keys_and_a_large_status_list(channel: Channel) -> None:
    answer = await verification(channel).GetTrustBundle(verification_pb2.GetTrustBundleRequest())
    offline = await download(channel)

    assert offline.status_list.size >= 131_072
    assert {k.issuer_uscc for k in offline.bundle.keys} == {AMR, "11320100MB0000000J"}
    assert offline.bundle.expires > datetime.now(UTC) + timedelta(days=7)
    assert answer.next_update.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert "d" not in json.loads(answer.root_public_jwk)


async def test_interop_a_server_token_verifies_with_pyjwt_and_jwcrypto(channel: Channel) -> None:
    import jwt
    from jwcrypto import jwk as jwcrypto_jwk
    from jwcrypto import jws as jwcrypto_jws

    certificate = await issue(channel, valid_until=stamp(datetime.now(UTC) + timedelta(days=30)))
    answer = await verification(channel).GetTrustBundle(verification_pb2.GetTrustBundleRequest())

    # jwcrypto checks the bundle's root signature and reads the JWKS out of it.
    bundle = jwcrypto_jws.JWS()
    bundle.deserialize(answer.trust_bundle)
    bundle.verify(jwcrypto_jwk.JWK(**json.loads(answer.root_public_jwk)))
    jwks = json.loads(bundle.payload)

    key_set = jwcrypto_jwk.JWKSet.from_json(json.dumps(jwks))
    token = jwcrypto_jws.JWS()
    token.deserialize(certificate.token)
    token.verify(key_set.get_key(token.jose_header["kid"]), alg="EdDSA")
    claims = json.loads(token.payload)
    assert claims["id"] == certificate.id

    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(certificate.token)["kid"]]
    decoded = jwt.decode(certificate.token, key.key, algorithms=["EdDSA"])
    assert decoded == claims
    assert decoded["holder_value"] == COMPANY


ERROR_CASES: list[tuple[str, Any, grpc.StatusCode, str | None]] = [
    (
        "issue without holder",
        lambda s, v: s.Issue(certificates_pb2.IssueRequest(request_id="a", type_code=LICENCE)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "holder",
    ),
    (
        "issue with a mistyped field",
        lambda s, v: s.Issue(licence_issue(fields=licence_fields(registered_capital_cny="一百万"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "fields.registered_capital_cny",
    ),
    (
        "issue with a missing field",
        lambda s, v: s.Issue(licence_issue(fields=licence_fields(legal_representative=None))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "fields.legal_representative",
    ),
    (
        "issue of an undeclared type",
        lambda s, v: s.Issue(
            certificates_pb2.IssueRequest(
                request_id="a",
                type_code="NOPE",
                holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=COMPANY),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "type_code",
    ),
    (
        "issue to an invalid holder key",
        lambda s, v: s.Issue(licence_issue(holder="91350100M000100Y44")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "holder.value",
    ),
    (
        "get with a wrong check character",
        lambda s, v: s.Get(
            certificates_pb2.GetRequest(
                certificate_id=certificate_id(LICENCE, AMR, "1", 1)[:-1] + "Z"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "certificate_id",
    ),
    (
        "get an unknown certificate",
        lambda s, v: s.Get(
            certificates_pb2.GetRequest(certificate_id=certificate_id(LICENCE, AMR, "1", 1))
        ),
        grpc.StatusCode.NOT_FOUND,
        None,
    ),
    (
        "list with a forged page token",
        lambda s, v: s.ListByHolder(
            certificates_pb2.ListByHolderRequest(
                holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=COMPANY),
                page_token="not-a-token",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    ),
    (
        "verify nothing",
        lambda s, v: v.Verify(verification_pb2.VerifyRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "presented",
    ),
    (
        "verify unreadable QR text",
        lambda s, v: v.Verify(verification_pb2.VerifyRequest(qr_text="ftp://x/y")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "qr_text",
    ),
    (
        "verify an unknown id",
        lambda s, v: v.Verify(
            verification_pb2.VerifyRequest(certificate_id=certificate_id(LICENCE, AMR, "1", 1))
        ),
        grpc.StatusCode.NOT_FOUND,
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "code", "field"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
async def test_errors_have_the_right_codes_and_name_the_field(
    channel: Channel, name: str, call: Any, code: grpc.StatusCode, field: str | None
) -> None:
    error = await rpc_error(call(certificates(channel), verification(channel)))
    assert error.code() == code, error.details()
    if field is not None:
        assert bad_field(error) == field


async def test_lifecycle_refusals_are_failed_precondition(channel: Channel) -> None:
    stub = certificates(channel)
    cid = (await issue(channel)).id
    await stub.Revoke(certificates_pb2.RevokeRequest(certificate_id=cid, reason="吊销"))

    for call in (
        stub.Revoke(certificates_pb2.RevokeRequest(certificate_id=cid, reason="again")),
        stub.Suspend(certificates_pb2.SuspendRequest(certificate_id=cid, reason="x")),
        stub.Reinstate(certificates_pb2.ReinstateRequest(certificate_id=cid)),
        stub.Supersede(
            certificates_pb2.SupersedeRequest(
                certificate_id=cid, request_id="s", fields=struct(licence_fields())
            )
        ),
    ):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "revoked" in (error.details() or "")
    missing_reason = await rpc_error(
        stub.Suspend(certificates_pb2.SuspendRequest(certificate_id=(await issue(channel)).id))
    )
    assert bad_field(missing_reason) == "reason"


async def test_concurrent_retries_of_one_issue_make_one_certificate(channel: Channel) -> None:
    request = licence_issue(request_id="hall-42-retry")
    answers = await asyncio.gather(*(certificates(channel).Issue(request) for _ in range(12)))

    assert len({a.certificate.id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1


async def test_list_by_holder_pages_through_grpc(channel: Channel) -> None:
    issued = {(await issue(channel)).id for _ in range(5)}
    holder = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=COMPANY)
    seen: list[str] = []
    token = ""
    while True:
        page = await certificates(channel).ListByHolder(
            certificates_pb2.ListByHolderRequest(holder=holder, page_size=2, page_token=token)
        )
        assert len(page.certificates) <= 2
        seen += [c.id for c in page.certificates]
        token = page.next_page_token
        if not token:
            break
    assert set(seen) == issued
    assert len(seen) == len(issued)


async def test_reading_a_certificate_is_audited_under_its_holder(
    hub_server: HubServer, channel: Channel
) -> None:
    certificate = await issue(channel)
    await certificates(channel).Get(certificates_pb2.GetRequest(certificate_id=certificate.id))
    await verification(channel).Verify(
        verification_pb2.VerifyRequest(certificate_id=certificate.id)
    )
    await verify_token(channel, certificate.token)  # the verifier holds it: not audited

    with hub_server.hub.database.engine.connect() as connection:
        actions = [
            row[0]
            for row in connection.execute(
                sa.text(
                    "SELECT action FROM audit_log WHERE subject_masked IS NOT NULL "
                    "ORDER BY sequence"
                )
            )
        ]
    assert actions == ["CERT_ISSUE", "CERT_READ", "CERT_VERIFY"]
    assert hub_server.hub.audit.store.verify().intact


async def test_a_second_node_sees_a_revocation_within_its_poll_interval(
    start_server: StartServer, database_url: str, tmp_path: Any
) -> None:
    settings = settings_for(database_url, tmp_path / "data", **{"signing.poll_seconds": 0.2})
    first, second = await start_server(settings), await start_server(settings)
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as one,
        grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as two,
    ):
        certificate = await issue(one)
        assert (await verify_token(two, certificate.token)).valid
        await certificates(one).Revoke(
            certificates_pb2.RevokeRequest(certificate_id=certificate.id, reason="吊销")
        )
        await asyncio.sleep(0.3)
        assert failed_checks(await verify_token(two, certificate.token)) == ["STATUS"]


async def test_the_root_key_and_bundle_survive_a_restart(
    start_server: StartServer, cert_settings: Any
) -> None:
    first = await start_server()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        before = await download(channel)
        certificate = await issue(channel)
    await first.stop(grace=0.1)
    second = await start_server()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
        after = await download(channel, before)
        assert after.verify(certificate.token).valid
    assert {k.kid for k in after.bundle.keys} == {k.kid for k in before.bundle.keys}
