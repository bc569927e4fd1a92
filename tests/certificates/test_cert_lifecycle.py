"""The certificate lifecycle on a real store: one transaction per action, audit included."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from cert_testkit import (
    AMR,
    COMPANY,
    LICENCE,
    OTHER_COMPANY,
    PERSON,
    PSB,
    RESIDENCE,
    SUITES,
    licence_fields,
    licence_request,
)

from certstore.audit import AuditLog
from certstore.certificates import CertificateStatus, CertificateWrite, HolderQuery
from certstore.database import Database
from domain.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    StoreError,
)
from domain.subjects import KeyKind, parse_key
from exchange.auth.policy import Caller
from exchange.certificates.library import CertificateLibrary
from exchange.certificates.lifecycle import IssueRequest, SupersedeRequest
from signing import certificate_id

ANONYMOUS = Caller(organization="", system="anonymous", anonymous_dev=True)
MARKET_REGULATOR = Caller(organization=AMR, system="licensing")
POLICE = Caller(organization=PSB, system="residence")


def audit_actions(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return [
            row[0]
            for row in connection.execute(sa.text("SELECT action FROM audit_log ORDER BY sequence"))
        ]


def certificate_count(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM certificates")).scalar_one())


def test_issue_signs_stores_and_audits_in_one_go(
    library: CertificateLibrary, database: Database
) -> None:
    issued = library.lifecycle.issue(licence_request(), MARKET_REGULATOR)

    stored = library.lifecycle.get(issued.certificate.id)
    assert stored == issued.certificate
    assert stored.status is CertificateStatus.VALID
    assert stored.certificate.fields["registered_capital_cny"] == 1_000_000
    assert stored.certificate.issuer_department == "南京市市场监督管理局"
    verdict = library.trust.current().verifier.verify(stored.token)
    assert verdict.valid, verdict.reasons
    assert audit_actions(database)[-1] == "CERT_ISSUE"
    assert AuditLog(database).verify().intact


def test_ids_are_gbt_36904_shaped_with_random_serials(library: CertificateLibrary) -> None:
    first = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate.certificate
    second = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate.certificate

    assert first.id == certificate_id(LICENCE, AMR, first.serial, 1)
    assert first.id.startswith(f"1.2.156.3005.2.{LICENCE}.{AMR}.")
    assert first.id.split(".")[-2] == "001"
    assert len(first.serial) == 16
    assert first.serial != second.serial
    assert first.status_list_index != second.status_list_index


def test_type_defaults_apply_validity_and_holder_kind(library: CertificateLibrary) -> None:
    request = IssueRequest(
        request_id="residence-1",
        type_code=RESIDENCE,
        holder=parse_key(KeyKind.ID_CARD, PERSON),
        fields={
            "name": "李四",
            "address": "南京市鼓楼区",
            "registered_on": "2025-03-01T09:00:00+08:00",
        },
    )
    certificate = library.lifecycle.issue(request, POLICE).certificate.certificate

    assert certificate.valid_until == certificate.valid_from + timedelta(days=365)
    assert certificate.holder_kind == "ID_CARD"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type_code": "NOSUCHTYPE"}, "type_code"),
        ({"type_code": ""}, "type_code"),
        ({"request_id": ""}, "request_id"),
        ({"request_id": "has space"}, "request_id"),
        ({"holder": parse_key(KeyKind.ID_CARD, PERSON)}, "holder.kind"),
        ({"issuer_uscc": PSB}, "issuer_uscc"),
        ({"fields": licence_fields(name=None)}, "fields.name"),
        (
            {"fields": licence_fields(registered_capital_cny="一百万")},
            "fields.registered_capital_cny",
        ),
        ({"fields": licence_fields(registered_capital_cny=1.5)}, "fields.registered_capital_cny"),
        ({"fields": licence_fields(established="2019-02-30")}, "fields.established"),
        ({"fields": licence_fields(nickname="x")}, "fields.nickname"),
        (
            {
                "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
                "valid_until": datetime(2025, 1, 1, tzinfo=UTC),
            },
            "valid_until",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_bad_request_names_its_field_and_stores_nothing(
    library: CertificateLibrary, database: Database, change: dict[str, object], field: str
) -> None:
    base = licence_request()
    values = {
        "request_id": base.request_id,
        "type_code": base.type_code,
        "holder": base.holder,
        "fields": base.fields,
        **change,
    }
    with pytest.raises(InvalidRequest) as raised:
        library.lifecycle.issue(IssueRequest(**values), ANONYMOUS)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert certificate_count(database) == 0


def test_only_the_issuer_may_issue_its_type(library: CertificateLibrary) -> None:
    with pytest.raises(PermissionDenied) as raised:
        library.lifecycle.issue(licence_request(), POLICE)
    assert "营业执照" in raised.value.message
    assert AMR in raised.value.message

    issued = library.lifecycle.issue(licence_request(), MARKET_REGULATOR).certificate
    for action in (library.lifecycle.revoke, library.lifecycle.suspend):
        with pytest.raises(PermissionDenied):
            action(issued.id, "not mine", POLICE)


def test_a_retried_issue_returns_the_same_certificate(library: CertificateLibrary) -> None:
    request = licence_request(request_id="hall-7-0001")

    first = library.lifecycle.issue(request, MARKET_REGULATOR)
    again = library.lifecycle.issue(request, MARKET_REGULATOR)

    assert not first.replayed
    assert again.replayed
    assert again.certificate == first.certificate


def test_a_request_id_reused_for_other_content_is_refused(library: CertificateLibrary) -> None:
    library.lifecycle.issue(licence_request(request_id="r-1"), ANONYMOUS)

    with pytest.raises(InvalidRequest) as raised:
        library.lifecycle.issue(licence_request(request_id="r-1", name="别的公司"), ANONYMOUS)
    assert raised.value.field == "request_id"


def test_concurrent_retries_store_one_certificate(
    library: CertificateLibrary, database: Database
) -> None:
    request = licence_request(request_id="burst-1")
    start = threading.Barrier(8)

    def issue_once(_: int) -> str:
        start.wait()
        return library.lifecycle.issue(request, ANONYMOUS).certificate.id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(issue_once, range(8)))

    assert len(ids) == 1
    assert certificate_count(database) == 1


def test_issue_many_is_all_or_nothing(library: CertificateLibrary, database: Database) -> None:
    good = [licence_request(request_id=f"batch-{n}") for n in range(5)]
    issued = library.lifecycle.issue_many(good, ANONYMOUS)
    assert [i.replayed for i in issued] == [False] * 5

    with pytest.raises(InvalidRequest):
        library.lifecycle.issue_many([licence_request(), licence_request(name=None)], ANONYMOUS)
    assert certificate_count(database) == 5


def test_a_failing_audit_write_rolls_the_issue_back(
    library: CertificateLibrary, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = library.store.state()

    def broken(self: CertificateWrite, entries: object) -> None:
        raise sa.exc.OperationalError("INSERT INTO audit_log", {}, Exception("disk full"))

    monkeypatch.setattr(CertificateWrite, "append_audit", broken)
    with pytest.raises(StoreError):
        library.lifecycle.issue(licence_request(), ANONYMOUS)

    assert certificate_count(database) == 0
    assert library.store.state().next_status_index == before.next_status_index


# (action, reason, allowed from) -> resulting status; everything else FAILED_PRECONDITION.
TRANSITIONS = [
    ("revoke", "营业执照被吊销", CertificateStatus.VALID, CertificateStatus.REVOKED),
    ("revoke", "营业执照被吊销", CertificateStatus.SUSPENDED, CertificateStatus.REVOKED),
    ("revoke", "again", CertificateStatus.REVOKED, None),
    ("revoke", "late", CertificateStatus.SUPERSEDED, None),
    ("suspend", "涉嫌虚假登记", CertificateStatus.VALID, CertificateStatus.SUSPENDED),
    ("suspend", "again", CertificateStatus.SUSPENDED, None),
    ("suspend", "late", CertificateStatus.REVOKED, None),
    ("reinstate", "核查无误", CertificateStatus.SUSPENDED, CertificateStatus.VALID),
    ("reinstate", "", CertificateStatus.VALID, None),
    ("reinstate", "", CertificateStatus.REVOKED, None),
    ("reinstate", "", CertificateStatus.SUPERSEDED, None),
]


def _bring_to(library: CertificateLibrary, status: CertificateStatus) -> str:
    life = library.lifecycle
    issued = life.issue(licence_request(), ANONYMOUS).certificate.id
    if status is CertificateStatus.SUSPENDED:
        life.suspend(issued, "setup", ANONYMOUS)
    elif status is CertificateStatus.REVOKED:
        life.revoke(issued, "setup", ANONYMOUS)
    elif status is CertificateStatus.SUPERSEDED:
        request = SupersedeRequest(issued, "setup-supersede", licence_fields(address="新地址"))
        life.supersede(request, ANONYMOUS)
    return issued


@pytest.mark.parametrize("cert_settings", SUITES, indirect=True)
@pytest.mark.parametrize(
    ("action", "reason", "start", "end"),
    TRANSITIONS,
    ids=[f"{a}-{s.value.lower()}" for a, _, s, _ in TRANSITIONS],
)
def test_status_transitions(
    library: CertificateLibrary,
    database: Database,
    action: str,
    reason: str,
    start: CertificateStatus,
    end: CertificateStatus | None,
) -> None:
    certificate = _bring_to(library, start)
    audited = len(audit_actions(database))
    change = getattr(library.lifecycle, action)

    if end is None:
        with pytest.raises(FailedPrecondition):
            change(certificate, reason, ANONYMOUS)
        assert library.lifecycle.get(certificate).status is start
        assert len(audit_actions(database)) == audited
        return
    changed = change(certificate, reason, ANONYMOUS)
    assert changed.status is end
    assert library.lifecycle.get(certificate).status is end
    assert audit_actions(database)[-1] == f"CERT_{action.upper()}"


def test_revocation_and_suspension_need_a_reason(library: CertificateLibrary) -> None:
    issued = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate.id
    for action in (library.lifecycle.revoke, library.lifecycle.suspend):
        with pytest.raises(InvalidRequest) as raised:
            action(issued, "  ", ANONYMOUS)
        assert raised.value.field == "reason"


def test_unknown_and_malformed_ids(library: CertificateLibrary) -> None:
    unknown = certificate_id(LICENCE, AMR, "0000000000000000", 1)
    with pytest.raises(NotFound):
        library.lifecycle.get(unknown)
    with pytest.raises(NotFound):
        library.lifecycle.revoke(unknown, "x", ANONYMOUS)
    wrong_check = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
    with pytest.raises(InvalidRequest) as raised:
        library.lifecycle.get(wrong_check)
    assert raised.value.field == "certificate_id"


def test_supersede_links_versions_and_sets_the_old_ones_revocation_bit(
    library: CertificateLibrary,
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3650)
    first = library.lifecycle.issue(
        IssueRequest(
            request_id="v1",
            type_code=LICENCE,
            holder=parse_key(KeyKind.USCC, COMPANY),
            fields=licence_fields(),
            valid_until=until,
        ),
        MARKET_REGULATOR,
    ).certificate

    done = library.lifecycle.supersede(
        SupersedeRequest(
            first.id, "v2", licence_fields(legal_representative="王五"), reason="变更法定代表人"
        ),
        MARKET_REGULATOR,
    )

    new, old = done.certificate, done.predecessor
    assert new.certificate.version == 2
    assert new.certificate.serial == first.certificate.serial
    assert new.certificate.predecessor == first.id
    assert new.certificate.valid_until == until  # the term carries over
    assert old.status is CertificateStatus.SUPERSEDED
    assert old.successor_id == new.id
    assert library.lifecycle.get(first.id).successor_id == new.id
    verifier = library.trust.current().verifier
    assert verifier.verify(new.token).valid
    assert [c.name.value for c in verifier.verify(first.token).failures] == ["STATUS"]

    retried = library.lifecycle.supersede(
        SupersedeRequest(
            first.id, "v2", licence_fields(legal_representative="王五"), reason="变更法定代表人"
        ),
        MARKET_REGULATOR,
    )
    assert retried.replayed
    assert retried.certificate.id == new.id


def test_list_by_holder_pages_newest_first(library: CertificateLibrary) -> None:
    issued = [library.lifecycle.issue(licence_request(), ANONYMOUS).certificate for _ in range(7)]
    library.lifecycle.issue(licence_request(holder=OTHER_COMPANY), ANONYMOUS)
    library.lifecycle.revoke(issued[0].id, "x", ANONYMOUS)

    seen: list[str] = []
    after = None
    while True:
        page = library.lifecycle.list_by_holder(
            HolderQuery("USCC", COMPANY, limit=3, after=after, include_inactive=True)
        )
        seen += [s.id for s in page]
        if len(page) < 3:
            break
        after = (page[-1].certificate.issued_at, page[-1].id)

    assert sorted(seen) == sorted(s.id for s in issued)
    stamps = [library.lifecycle.get(i).certificate.issued_at for i in seen]
    assert stamps == sorted(stamps, reverse=True)
    active = library.lifecycle.list_by_holder(HolderQuery("USCC", COMPANY, limit=50))
    assert issued[0].id not in {s.id for s in active}
    assert len(active) == 6


def test_the_store_refuses_a_certificate_without_its_token(database: Database) -> None:
    columns = {c["name"]: c for c in sa.inspect(database.engine).get_columns("certificates")}
    assert columns["token"]["nullable"] is False
    assert columns["kid"]["nullable"] is False


def test_verify_presented_is_the_online_check_a_web_page_can_use(
    library: CertificateLibrary,
) -> None:
    from exchange.certificates.verification import Presented, PresentedKind

    issued = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate
    library.lifecycle.suspend(issued.id, "核查中", ANONYMOUS)

    for presented in (
        Presented(PresentedKind.TOKEN, issued.token),
        Presented(PresentedKind.CERTIFICATE_ID, issued.id),
        Presented(PresentedKind.QR_TEXT, f"https://tongban.example.gov.cn/v/{issued.id}"),
    ):
        result = library.verify_presented(presented)
        assert not result.verdict.valid
        assert [c.name.value for c in result.verdict.failures] == ["STATUS"]
        assert "suspended since" in result.verdict.failures[0].reason
        assert result.stored is not None
        assert result.stored.status is CertificateStatus.SUSPENDED
    assert library.qr_text(issued) == issued.token
