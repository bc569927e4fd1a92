"""The lookup part of the demo's story, told against a running world through a real hub."""

from __future__ import annotations

import io

from rich.console import Console

from exchange.demo.launcher import DemoWorld
from exchange.demo.story import run_lookup_story, source_outcomes

EVERY_SOURCE = ("psb.population", "amr.business", "nrb.realestate", "hrss.social-security")


async def test_the_lookup_story_is_told_step_by_step(small_world: DemoWorld, database_url):
    out = io.StringIO()
    outcome = await run_lookup_story(
        small_world, Console(file=out, width=140), **{"database.url": database_url}
    )
    showcase = small_world.showcase

    assert source_outcomes(outcome.resident) == dict.fromkeys(EVERY_SOURCE, "OK")
    assert not outcome.resident.partial
    assert {r.record_type for r in outcome.resident.records} == {
        "population.resident",
        "market.business_license",
        "realestate.title",
        "social_security.enrolment",
    }

    assert source_outcomes(outcome.company) == {"amr.business": "OK"}
    assert [r.subject.value for r in outcome.company.records] == [showcase.uscc]

    assert outcome.outage.partial
    assert source_outcomes(outcome.outage)["psb.population"] in ("ERROR", "TIMEOUT")
    # In time: the story's lookups carry a 3 s deadline, so a late answer would have failed.
    assert outcome.outage_seconds > 0
    assert "population.resident" not in {r.record_type for r in outcome.outage.records}

    assert source_outcomes(outcome.stale)["psb.population"] == "STALE_SERVED"
    stale = [r for r in outcome.stale.records if r.record_type == "population.resident"]
    assert len(stale) == 1
    assert stale[0].fields["name"] == showcase.resident.name

    printed = out.getvalue()
    for heading in ("1. 一次查询", "2. 旧组织机构代码", "3. 一个部门停机", "4. 允许使用缓存"):
        assert heading in printed
    assert showcase.id_card in printed
    assert showcase.org_code in printed
    assert "the population registry is back" in printed
    assert "population" in small_world.running
