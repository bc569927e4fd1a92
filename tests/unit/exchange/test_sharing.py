"""The sharing catalogue's pure parts: working days, catalogue settings, effective grants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from certstore.access import APPROVED, REVOKED, AccessApplication
from domain.errors import ConfigError
from exchange.auth.policy import ALL, AccessPolicy, Caller, PolicySettings
from exchange.settings import load_settings
from exchange.sharing.applications import effective_grant
from exchange.sharing.calendar import WorkingCalendar
from exchange.sharing.catalogue import SharingCatalogue

BEIJING = timezone(timedelta(hours=8))
EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "tongban.example.toml"
OWNER = "11100000MB0198344B"
HALL = "91350100M000100Y43"

# submitted (Beijing time), working days, holidays, make-up days, deadline (the start of
# the next Beijing day after the last working day)
CALENDAR = [
    ("Tuesday: two weeks, weekends skipped", datetime(2026, 12, 1, 10), 10, (), (),
     datetime(2026, 12, 16)),
    ("Friday evening counts from Monday", datetime(2026, 12, 4, 23, 59), 1, (), (),
     datetime(2026, 12, 8)),
    ("a holiday is skipped", datetime(2026, 12, 1, 10), 2, (date(2026, 12, 2),), (),
     datetime(2026, 12, 5)),
    ("National Day week with its make-up Saturday", datetime(2026, 9, 30, 9), 1,
     tuple(date(2026, 10, d) for d in range(1, 8)), (date(2026, 10, 10),),
     datetime(2026, 10, 9)),
    ("the make-up Saturday itself", datetime(2026, 10, 9, 9), 1,
     (), (date(2026, 10, 10),), datetime(2026, 10, 11)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("submitted", "days", "holidays", "makeup", "deadline"),
    [row[1:] for row in CALENDAR],
    ids=[row[0] for row in CALENDAR],
)
def test_decision_deadlines_count_working_days(submitted, days, holidays, makeup, deadline):
    calendar = WorkingCalendar(BEIJING, holidays, makeup)
    found = calendar.deadline(submitted.replace(tzinfo=BEIJING).astimezone(UTC), days)
    assert found == deadline.replace(tzinfo=BEIJING)


def _types(**social: Any) -> dict[str, Any]:
    declared = {
        name: value.model_dump(mode="json")
        for name, value in load_settings(EXAMPLE).record_types.items()
    }
    declared["social_security.enrolment"] = {
        "fields": {"insurance": "string", "status": "string", "base": "integer"},
        "owner_uscc": OWNER,
        "owner_department": "人社部",
        "sharing": "CONDITIONAL",
        **social,
    }
    return declared


BAD_ENTRIES = [
    ("conditional without owner", {"owner_uscc": "", "owner_department": ""}, "needs owner_uscc"),
    ("owner without name", {"owner_department": ""}, "owner_department is required"),
    ("bad owner", {"owner_uscc": "11100000MB0198344A"}, "owner_uscc"),
    ("bad provider", {"providers": ["123"]}, "providers"),
    ("field widened", {"field_sharing": {"base": "UNCONDITIONAL"}}, "more restricted"),
    ("unknown field", {"field_sharing": {"salary": "NOT_SHARED"}}, "undeclared field"),
    ("unknown class", {"sharing": "SOMETIMES"}, "sharing"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"), [row[1:] for row in BAD_ENTRIES], ids=[row[0] for row in BAD_ENTRIES]
)
def test_bad_catalogue_entries_are_refused_at_start_naming_the_setting(change, named):
    with pytest.raises(ConfigError) as refused:
        load_settings(EXAMPLE, record_types=_types(**change))
    assert "social_security.enrolment" in refused.value.message
    assert named in refused.value.message


def test_access_settings_are_checked():
    with pytest.raises(ConfigError) as refused:
        load_settings(EXAMPLE, **{"access.default_grant_days": 400, "access.max_grant_days": 300})
    assert "default_grant_days" in refused.value.message
    with pytest.raises(ConfigError) as refused:
        load_settings(
            EXAMPLE,
            **{"access.holidays": ["2026-10-10"], "access.working_weekend_days": ["2026-10-10"]},
        )
    assert "2026-10-10" in refused.value.message


NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _grant(fields: dict[str, tuple[str, ...]], state: str = APPROVED, days: int = 1) -> Any:
    return AccessApplication(
        application_id="AA-1",
        applicant=f"{HALL}/hall",
        owner_uscc=OWNER,
        requested_fields=fields,
        purposes=("p",),
        legal_basis="",
        contact="",
        requested_days=days,
        state=state,
        submitted_at=NOW,
        decide_by=NOW,
        granted_fields=fields,
        grant_expires_at=NOW + timedelta(days=days),
    )


HALL_CALLER = Caller(HALL, "hall")
STATIC = {"population.resident": ["name", "birth_date"]}
SOCIAL = "social_security.enrolment"
GRANTS = [
    # name, catalogue change, static policy additions, grants, readable social fields
    ("no grant", {}, {}, [], None),
    ("grant of all fields keeps unshared ones out", {"field_sharing": {"base": "NOT_SHARED"}},
     {}, [_grant({SOCIAL: ()})], {"insurance", "status"}),
    ("narrow grant", {}, {}, [_grant({SOCIAL: ("status",)})], {"status"}),
    ("static policy limits a grant", {}, {SOCIAL: ["insurance"]},
     [_grant({SOCIAL: ("insurance", "status")})], {"insurance"}),
    ("revoked grant", {}, {}, [_grant({SOCIAL: ()}, state=REVOKED)], None),
    ("expired grant", {}, {}, [_grant({SOCIAL: ()}, days=-1)], None),
    ("not shared type", {"sharing": "NOT_SHARED"}, {SOCIAL: ["*"]}, [_grant({SOCIAL: ()})], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "static", "grants", "readable"),
    [row[1:] for row in GRANTS],
    ids=[row[0] for row in GRANTS],
)
def test_effective_grant(change, static, grants, readable):
    settings = load_settings(
        EXAMPLE,
        record_types=_types(**change),
        policies=[{"caller": f"{HALL}/hall", "rpcs": ["*"], "record_types": {**STATIC, **static}}],
    )
    base = AccessPolicy(settings.policies).grant(HALL_CALLER)
    grant = effective_grant(base, HALL_CALLER, SharingCatalogue(settings.record_types), grants, NOW)
    record = {"insurance": "养老", "status": "参保", "base": 8600}
    if readable is None:
        assert SOCIAL not in grant.readable_types([SOCIAL])
        assert SOCIAL in grant.withheld
    else:
        assert grant.readable_types([SOCIAL]) == [SOCIAL]
        assert set(grant.minimize(SOCIAL, record)) == readable
    # The unconditional type is exactly what the static policy says, grant or not.
    assert grant.fields_of("population.resident") == frozenset(STATIC["population.resident"])


def test_conditional_fields_of_an_unconditional_type_need_a_grant():
    record_types = _types()
    record_types["population.resident"]["field_sharing"] = {"household_address": "CONDITIONAL"}
    settings = load_settings(
        EXAMPLE,
        record_types=record_types,
        policies=[
            PolicySettings(
                caller=f"{HALL}/hall", rpcs=["*"], record_types={"population.resident": [ALL]}
            ).model_dump()
        ],
    )
    catalogue = SharingCatalogue(settings.record_types)
    base = AccessPolicy(settings.policies).grant(HALL_CALLER)
    record = {"name": "张三", "household_address": "南京市"}
    without = effective_grant(base, HALL_CALLER, catalogue, [], NOW)
    assert without.minimize("population.resident", record) == {"name": "张三"}
    application = _grant({"population.resident": ("household_address",)})
    granted = effective_grant(base, HALL_CALLER, catalogue, [application], NOW)
    assert granted.minimize("population.resident", record) == record
