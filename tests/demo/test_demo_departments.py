"""Each simulated department, started as a real process, queried through the hub's real
adapter of its kind (built from the settings the launcher produces)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapters.base import Adapter, ChangeKind
from domain.errors import AdapterError
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, parse_key
from exchange.demo.departments import EXPORT_COLUMNS
from exchange.demo.launcher import ADAPTER_IDS, RECORD_TYPES, DemoWorld
from exchange.demo.world import AnomalyKind

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def adapters(running_world: DemoWorld, build_adapters) -> dict[str, Adapter]:
    built = build_adapters(running_world.settings())
    return {name: built[adapter_id] for name, adapter_id in ADAPTER_IDS.items()}


async def fetch(adapter: Adapter, kind: KeyKind, value: str, purpose: Purpose):
    return await adapter.fetch(parse_key(kind, value), list(adapter.spec.serves), purpose)


def only(records) -> SourceRecord:
    assert len(records) == 1, records
    return records[0]


def test_settings_declare_one_adapter_of_each_kind(running_world: DemoWorld):
    settings = running_world.settings()
    assert [(a.id, a.kind) for a in settings.adapters] == [
        ("psb.population", "grpc"),
        ("amr.business", "sql"),
        ("nrb.realestate", "http"),
        ("hrss.social-security", "file"),
    ]
    assert set(settings.record_types) == set(RECORD_TYPES)
    assert settings.database_url.endswith(str(running_world.data_dir / "tongban.db"))


async def test_population_registry_answers_over_grpc(running_world: DemoWorld, adapters, purpose):
    showcase = running_world.showcase
    answer = await fetch(adapters["population"], KeyKind.ID_CARD, showcase.id_card, purpose)
    record = only(answer.records)
    resident = showcase.resident
    assert record.source_record_id == resident.population_record_id
    assert record.fields == {
        "name": resident.name,
        "gender": resident.gender,
        "birth_date": resident.birth_date.isoformat(),
        "ethnicity": resident.ethnicity,
        "household_address": resident.household_address,
        "household_division": resident.division.code,
    }
    missing = await fetch(
        adapters["population"], KeyKind.ID_CARD, showcase.unregistered.id_card, purpose
    )
    assert missing.records == ()


async def test_population_changes_resume_after_their_cursor(running_world: DemoWorld, adapters):
    population = adapters["population"]
    first: list[str] = []
    cursor = None
    async for batch in population.changes(None, batch_size=700):
        first += [c.source_record_id for c in batch.changes]
        cursor = batch.cursor
        if len(first) >= 1400:
            break
    rest: list[str] = []
    async for batch in population.changes(cursor, batch_size=1000):
        assert all(c.kind is ChangeKind.UPSERT for c in batch.changes)
        rest += [c.source_record_id for c in batch.changes]
    everyone = sorted(r.population_record_id for r in running_world.world.registered_residents)
    assert first + rest == everyone


async def test_business_registry_is_read_by_uscc_org_code_and_representative(
    running_world: DemoWorld, adapters, purpose
):
    company = running_world.showcase.company
    business = adapters["business"]
    by_uscc = only((await fetch(business, KeyKind.USCC, company.uscc, purpose)).records)
    assert by_uscc.subject.value == company.uscc
    assert by_uscc.fields["name"] == company.name
    assert by_uscc.fields["legal_representative"] == company.legal_representative.name
    assert by_uscc.fields["registered_capital_cny"] == company.registered_capital_cny
    assert by_uscc.fields["established"] == company.established.isoformat()
    assert by_uscc.fields["organization_code"] == company.org_code
    # SPEC: a lookup by org code also finds the record filed under the USCC embedding it.
    by_org_code = only((await fetch(business, KeyKind.ORG_CODE, company.org_code, purpose)).records)
    assert by_org_code == by_uscc
    representative = company.legal_representative.id_card
    by_person = only((await fetch(business, KeyKind.ID_CARD, representative, purpose)).records)
    assert by_person.subject.value == company.uscc


async def test_business_registry_changes_while_it_runs(running_world: DemoWorld, adapters):
    business = adapters["business"]
    cursor = None
    async for batch in business.changes(None, batch_size=1000):
        cursor = batch.cursor
    news = []
    expires = time.monotonic() + 10
    while not news and time.monotonic() < expires:
        await asyncio.sleep(0.2)
        async for batch in business.changes(cursor, batch_size=100):
            news += batch.changes
    assert news, "no live change within 10 s"
    assert all(change.kind is ChangeKind.UPSERT for change in news)
    assert running_world.showcase.uscc not in {c.record.subject.value for c in news if c.record}


async def test_real_estate_api_answers_by_certificate_owner_and_unit(
    running_world: DemoWorld, adapters, purpose
):
    showcase = running_world.showcase
    realestate = adapters["realestate"]
    title = showcase.title
    by_cert = only(
        (
            await fetch(realestate, KeyKind.REAL_ESTATE_CERT, title.certificate_number, purpose)
        ).records
    )
    assert by_cert.source_record_id == title.title_id
    assert by_cert.fields["owner"] == showcase.resident.name
    assert by_cert.fields["area_m2"] == title.area_m2
    by_unit = only(
        (await fetch(realestate, KeyKind.REAL_ESTATE_UNIT, title.unit_number, purpose)).records
    )
    assert by_unit == by_cert
    by_owner = await fetch(realestate, KeyKind.ID_CARD, showcase.id_card, purpose)
    owned = running_world.world.titles_by_owner[showcase.id_card]
    assert {r.source_record_id for r in by_owner.records} == {t.title_id for t in owned}


async def test_real_estate_api_pages_through_every_title(running_world: DemoWorld, adapters):
    seen = []
    async for batch in adapters["realestate"].changes(None, batch_size=500):
        seen += [c.source_record_id for c in batch.changes if c.kind is ChangeKind.UPSERT]
    assert sorted(seen) == sorted(t.title_id for t in running_world.world.titles)


async def test_real_estate_api_refuses_a_wrong_token(
    running_world: DemoWorld, build_adapters, purpose
):
    settings = running_world.settings()
    declared = [a.model_dump() for a in settings.adapters]
    declared[2]["options"]["auth_token"] = "Bearer not-the-token"
    wrong = build_adapters(running_world.settings(adapters=declared))["nrb.realestate"]
    cert = running_world.showcase.certificate_number
    with pytest.raises(AdapterError, match="HTTP 401"):
        await fetch(wrong, KeyKind.REAL_ESTATE_CERT, cert, purpose)


async def test_social_security_exports_are_read_with_their_anomalies(
    running_world: DemoWorld, adapters, purpose
):
    file_adapter = adapters["social-security"]
    showcase = running_world.showcase
    record = only((await fetch(file_adapter, KeyKind.ID_CARD, showcase.id_card, purpose)).records)
    assert record.source_record_id == showcase.enrolment.enrolment_number
    assert record.fields["insurance"] == showcase.enrolment.insurance
    assert record.fields["since"] == showcase.enrolment.since.isoformat()

    anomalies = {a.kind: a.resident for a in running_world.world.anomalies}
    impossible = anomalies[AnomalyKind.IMPOSSIBLE_DATE_ROW].id_card
    answer = await fetch(file_adapter, KeyKind.ID_CARD, impossible, purpose)
    assert len(answer.records) == 1
    assert [r.reason for r in answer.rejected] == [
        "field 'since' (from '参保日期'): '2019-02-30' is not a date"
    ]
    reasons = [r.reason for rows in file_adapter.rejections.values() for r in rows]
    assert any("check character" in reason for reason in reasons)
    assert len(reasons) == 2


async def test_social_security_writes_deltas_after_the_full_export(
    running_world: DemoWorld, adapters
):
    folder = Path(running_world.ready("social-security")["folder"])
    names = await exports_once_a_delta_is_written(folder)
    assert names[0].endswith("-full.csv")
    assert names[1].endswith("-delta.csv")
    raw = await asyncio.to_thread((folder / names[1]).read_bytes)
    assert raw.startswith(b"\xef\xbb\xbf" + ",".join(EXPORT_COLUMNS).encode())
    delta_rows = []
    async for batch in adapters["social-security"].changes(f"{names[0]}:999999", batch_size=50):
        delta_rows += batch.changes
    assert delta_rows
    assert all(c.kind is ChangeKind.UPSERT for c in delta_rows)


async def exports_once_a_delta_is_written(folder: Path) -> list[str]:
    """The export file names, in order, once the first delta has been written."""
    for _ in range(50):
        names = await asyncio.to_thread(lambda: sorted(p.name for p in folder.glob("*.csv")))
        if any(name.endswith("-delta.csv") for name in names):
            return names
        await asyncio.sleep(0.2)
    pytest.fail("no delta export within 10 s")


def test_a_department_runs_by_hand_and_stops_cleanly_on_sigterm(tmp_path: Path):
    environment = {k: v for k, v in os.environ.items() if k != "DEMO_REALESTATE_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.demo.departments", "realestate",
         "--data-dir", str(tmp_path), "--seed", "7", "--residents", "300", "--companies", "30"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("READY ")
        ready = json.loads(line.removeprefix("READY "))
        assert ready["department"] == "realestate"
        assert ready["pid"] == process.pid
        url = f"{ready['base_url']}/api/v1/titles/changes"
        assert httpx.get(url, params={"size": 1}, trust_env=False).status_code == 401
        answer = httpx.get(
            url,
            params={"size": 2},
            headers={"Authorization": f"Bearer {ready['token']}"},
            trust_env=False,
        )
        assert answer.status_code == 200
        assert len(answer.json()["data"]["records"]) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
