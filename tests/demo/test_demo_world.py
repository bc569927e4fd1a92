"""The demo world: reproducible from its seed, every key valid, every reference consistent."""

from __future__ import annotations

import functools
from datetime import date

import pytest

from domain.errors import InvalidKey
from domain.subjects import KeyKind, parse_key
from exchange.demo.world import (
    DIVISIONS,
    WORLD_DATE,
    AnomalyKind,
    Division,
    World,
    generate_world,
    make_id_card,
    make_uscc,
)

DIVISIONS_BY_CODE = {d.code: d for d in DIVISIONS}
PROVINCES = {
    "11": ("北京市", "京"),
    "31": ("上海市", "沪"),
    "32": ("江苏省", "苏"),
    "33": ("浙江省", "浙"),
    "44": ("广东省", "粤"),
    "51": ("四川省", "川"),
}


@functools.cache
def world(seed: int = 20240630) -> World:
    return generate_world(seed)


def adult_on(birth: date, years: int) -> date:
    return date(birth.year + years, birth.month, min(birth.day, 28))


def test_the_same_seed_gives_the_same_world_and_another_seed_another():
    again = generate_world(20240630)
    assert again == world()
    other = generate_world(7, residents=600, companies=120)
    assert {r.id_card for r in other.residents}.isdisjoint(
        {r.id_card for r in world().residents[:50]}
    )


def test_default_sizes():
    assert len(world().residents) == 3000
    assert len(world().companies) == 600
    assert len(world().titles) > 1000
    assert len(world().enrolments) > 2800


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"residents": 100, "companies": 20}, "at least 300 residents"),
        ({"residents": 300, "companies": 10}, "30 companies"),
        ({"residents": 300, "companies": 70}, "5 residents per company"),
    ],
)
def test_too_small_a_world_is_refused(sizes, message):
    with pytest.raises(ValueError, match=message):
        generate_world(1, **sizes)


def test_identifier_builders_reproduce_the_standards_examples():
    # GB 11643-1999's example and the walkthrough's USCC (GB 32100-2015).
    assert make_id_card("110105", date(1949, 12, 31), 2) == "11010519491231002X"
    assert make_uscc("91", "350100", "M000100Y") == "91350100M000100Y43"


@pytest.mark.parametrize("division", DIVISIONS, ids=lambda d: d.code)
def test_divisions_are_named_by_their_province(division: Division):
    province, abbreviation = PROVINCES[division.code[:2]]
    assert len(division.code) == 6
    assert division.code.isdigit()
    assert division.province == province
    assert division.abbreviation == abbreviation
    assert division.full_name.startswith(division.city if province == division.city else province)


def test_division_table_is_about_thirty_distinct_codes():
    assert 28 <= len(DIVISIONS_BY_CODE) == len(DIVISIONS) <= 40


def test_every_key_of_the_world_passes_parse_key_unchanged():
    keys: list[tuple[KeyKind, str]] = []
    for resident in world().residents:
        keys.append((KeyKind.ID_CARD, resident.id_card))
    for company in world().companies:
        keys += [(KeyKind.USCC, company.uscc), (KeyKind.ORG_CODE, company.org_code)]
    for title in world().titles:
        keys += [
            (KeyKind.REAL_ESTATE_CERT, title.certificate_number),
            (KeyKind.REAL_ESTATE_UNIT, title.unit_number),
        ]
    for kind, value in keys:
        assert parse_key(kind, value).value == value
    assert len({value for _, value in keys}) == len(keys), "identifiers repeat"


def test_residents_ids_match_their_division_birth_date_and_gender():
    for resident in world().residents:
        key = resident.id_card
        assert key[:6] == resident.division.code
        assert DIVISIONS_BY_CODE[key[:6]] == resident.division
        assert key[6:14] == f"{resident.birth_date:%Y%m%d}"
        assert date(1940, 1, 1) <= resident.birth_date <= date(2005, 12, 31)
        assert resident.gender == ("男" if int(key[16]) % 2 else "女")
        assert resident.household_address.startswith(resident.division.full_name)
        assert 2 <= len(resident.name) <= 4


def test_companies_codes_match_their_division_category_and_age():
    residents = world().residents_by_id_card
    categories = {"个体工商户": "92", "农民专业合作社": "93"}
    for company in world().companies:
        assert company.uscc[2:8] == company.division.code
        assert company.uscc[:2] == categories.get(company.company_type, "91")
        assert company.org_code == f"{company.uscc[8:16]}-{company.uscc[16]}"
        legacy = company.established < date(2015, 10, 1)
        assert company.uscc[8:16].isdigit() == legacy
        assert company.uscc[8:10] == "MA" or legacy
        representative = company.legal_representative
        assert residents[representative.id_card] is representative
        assert adult_on(representative.birth_date, 18) <= company.established <= WORLD_DATE
        assert company.address.startswith(company.division.full_name)
    assert len({c.name for c in world().companies}) == len(world().companies)


def test_titles_are_numbered_where_the_unit_lies_and_owned_by_residents():
    residents = world().residents_by_id_card
    for title in world().titles:
        division = DIVISIONS_BY_CODE[title.unit_number[:6]]
        year = title.registered_on.year
        assert title.certificate_number.startswith(
            f"{division.abbreviation}({year}){division.registry_place}不动产权第"
        )
        assert title.location.startswith(division.full_name)
        assert residents[title.owner.id_card] is title.owner
        assert title.registered_on >= adult_on(title.owner.birth_date, 18)
        assert 38 <= title.area_m2 <= 180


def test_enrolments_belong_to_residents_and_name_companies_of_the_world():
    residents = world().residents_by_id_card
    companies = world().companies_by_uscc
    for enrolment in world().enrolments:
        assert residents[enrolment.insured.id_card] is enrolment.insured
        if enrolment.employer is not None:
            assert companies[enrolment.employer.uscc] is enrolment.employer
            assert enrolment.since >= enrolment.employer.established
        assert enrolment.since >= adult_on(enrolment.insured.birth_date, 18)
    numbers = [e.enrolment_number for e in world().enrolments]
    numbers += [row.enrolment.enrolment_number for row in world().malformed_export_rows]
    assert len(set(numbers)) == len(numbers)


def test_anomalies_are_one_of_each_kind_and_break_what_they_say():
    anomalies = {a.kind: a for a in world().anomalies}
    assert set(anomalies) == set(AnomalyKind)
    unregistered = anomalies[AnomalyKind.UNREGISTERED_RESIDENT].resident
    assert unregistered not in world().registered_residents
    assert len(world().registered_residents) == len(world().residents) - 1
    assert world().titles_by_owner[unregistered.id_card]
    assert world().enrolments_by_insured[unregistered.id_card]

    rows = {row.anomaly.kind: row for row in world().malformed_export_rows}
    mistyped = rows[AnomalyKind.MISTYPED_ID_ROW]
    assert mistyped.column == "证件号码"
    assert mistyped.text[:17] == mistyped.anomaly.resident.id_card[:17]
    with pytest.raises(InvalidKey, match="check character"):
        parse_key(KeyKind.ID_CARD, mistyped.text)
    impossible = rows[AnomalyKind.IMPOSSIBLE_DATE_ROW]
    assert (impossible.column, impossible.text) == ("参保日期", "2019-02-30")
    assert impossible.enrolment.insured is impossible.anomaly.resident
    assert world().enrolments_by_insured[impossible.enrolment.insured.id_card]


def test_showcase_has_data_in_every_department():
    showcase = world().showcase()
    resident = showcase.resident
    assert resident in world().registered_residents
    assert showcase.company.legal_representative is resident
    assert showcase.company.status == "存续"
    assert showcase.title in world().titles_by_owner[resident.id_card]
    assert world().enrolments_by_insured[resident.id_card] == (showcase.enrolment,)
    assert showcase.unregistered.id_card in world().unregistered_id_cards
    assert resident.id_card not in {a.resident.id_card for a in world().anomalies}
