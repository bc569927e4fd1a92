"""Caller identity (certificates, dev tokens) and the access policy, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from domain.errors import NotFound, PermissionDenied, Unauthenticated
from domain.subjects import KeyKind, parse_key
from exchange.auth.ca import CertificateAuthority
from exchange.auth.identity import (
    ANONYMOUS_DEV,
    CallerResolver,
    caller_from_certificate,
    caller_from_dev_token,
    issue_dev_token,
)
from exchange.auth.policy import AccessPolicy, Caller, PolicySettings, minimized

HALL = "91350100M000100Y43"
SECRET = b"dev-secret"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CertificateAuthority.init(tmp_path_factory.mktemp("ca"))


def pem(path) -> dict[str, list[bytes]]:
    return {"x509_pem_cert": [path.read_bytes()]}


def test_identity_comes_from_the_certificate(ca, tmp_path):
    subject = parse_key(KeyKind.ID_CARD, "11010519491231002X")
    issued = ca.issue_client(
        HALL, "citizen-portal", tmp_path, roles=("auditor",), subject_key=subject
    )
    caller = caller_from_certificate(
        x509.load_pem_x509_certificate(issued.certificate.read_bytes())
    )
    assert caller == Caller(HALL, "citizen-portal", frozenset({"auditor"}), subject)
    assert caller.name == f"{HALL}/citizen-portal"


def test_production_refuses_missing_revoked_and_expired_certificates(ca, tmp_path):
    good = ca.issue_client(HALL, "hall", tmp_path / "good")
    revoked = ca.issue_client(HALL, "hall", tmp_path / "revoked")
    expired = ca.issue_client(
        HALL, "hall", tmp_path / "expired", days=1, not_before=datetime.now(UTC) - timedelta(days=2)
    )
    ca.revoke(revoked.serial)
    resolver = CallerResolver(production=True, crl_file=ca.folder / "crl.pem")
    assert resolver.resolve(pem(good.certificate), ()).system == "hall"
    for files, says in ((revoked, "revoked"), (expired, "expired")):
        with pytest.raises(Unauthenticated, match=says):
            resolver.resolve(pem(files.certificate), ())
    with pytest.raises(Unauthenticated, match="client certificate is required"):
        resolver.resolve({}, ())


def test_the_crl_is_reread_when_it_changes(ca, tmp_path):
    issued = ca.issue_client(HALL, "later-revoked", tmp_path)
    resolver = CallerResolver(production=True, crl_file=ca.folder / "crl.pem")
    assert resolver.resolve(pem(issued.certificate), ()).system == "later-revoked"
    ca.revoke(issued.serial)
    import os

    stat = (ca.folder / "crl.pem").stat()
    os.utime(ca.folder / "crl.pem", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(Unauthenticated, match="revoked"):
        resolver.resolve(pem(issued.certificate), ())


DEV_CASES = [
    ("no token, anonymous allowed", True, None, ANONYMOUS_DEV),
    ("valid token", True, issue_dev_token(SECRET, HALL, "hall"), Caller(HALL, "hall")),
    ("no token, anonymous refused", False, None, Unauthenticated),
    (
        "token signed by another secret",
        True,
        issue_dev_token(b"other", HALL, "hall"),
        Unauthenticated,
    ),
    ("expired token", True, issue_dev_token(SECRET, HALL, "hall", lifetime=-1), Unauthenticated),
    ("garbage", True, "not-a-token", Unauthenticated),
]


@pytest.mark.parametrize(
    ("anonymous", "token", "expected"), [c[1:] for c in DEV_CASES], ids=[c[0] for c in DEV_CASES]
)
def test_dev_mode_identity(anonymous, token, expected):
    resolver = CallerResolver(
        production=False, dev_token_secret=SECRET, dev_allow_anonymous=anonymous
    )
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    if isinstance(expected, type):
        with pytest.raises(expected):
            resolver.resolve({}, metadata)
    else:
        assert resolver.resolve({}, metadata) == expected


def test_dev_token_round_trip_with_roles():
    token = issue_dev_token(SECRET, HALL, "audit", roles=["auditor"])
    assert caller_from_dev_token(SECRET, token).roles == {"auditor"}


POLICY = AccessPolicy(
    [
        PolicySettings(
            caller=f"{HALL}/hall",
            rpcs=["ExchangeService/Lookup"],
            record_types={"population.resident": ["name"]},
            reasons=["^企业开办"],
        ),
        PolicySettings(caller=f"{HALL}/*", rpcs=["AdapterRegistry/List"]),
    ]
)

RPC_CASES = [
    (Caller(HALL, "hall"), "ExchangeService", "Lookup", True),
    (Caller(HALL, "hall"), "ExchangeService", "BatchLookup", False),
    (Caller(HALL, "hall"), "AdapterRegistry", "List", True),
    (Caller(HALL, "other"), "AdapterRegistry", "List", True),
    (Caller(HALL, "other"), "ExchangeService", "Lookup", False),
    (Caller("11320100MB0000000J", "x"), "ExchangeService", "Lookup", False),
    (Caller("11320100MB0000000J", "x"), "VerificationService", "Verify", True),
    (ANONYMOUS_DEV, "SyncService", "Start", True),
]


@pytest.mark.parametrize(("caller", "service", "method", "allowed"), RPC_CASES)
def test_rpcs_are_default_deny(caller, service, method, allowed):
    if allowed:
        POLICY.check_rpc(caller, service, method)
    else:
        with pytest.raises(PermissionDenied):
            POLICY.check_rpc(caller, service, method)


def test_grant_fields_and_reasons():
    grant = POLICY.grant(Caller(HALL, "hall"))
    assert grant.readable_types(["population.resident", "market.business_license"]) == [
        "population.resident"
    ]
    assert minimized({"name": "张三", "gender": "男"}, grant.fields_of("population.resident")) == {
        "name": "张三"
    }
    assert grant.allows_reason("企业开办: 设立")
    assert not grant.allows_reason("curiosity")


def test_the_ca_refuses_to_revoke_a_serial_it_never_issued(ca, tmp_path):
    issued = ca.issue_client(HALL, "hall", tmp_path / "hall")
    before = ca.revoked_serials()
    with pytest.raises(NotFound, match="never issued a certificate with serial 12345"):
        ca.revoke(12345)
    assert ca.revoked_serials() == before
    ca.revoke(issued.serial)
    assert ca.revoked_serials() == sorted({*before, issued.serial})
