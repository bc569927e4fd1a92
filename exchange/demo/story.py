"""The lookup part of the demo's story, told against a running `DemoWorld`.

Every step is a real gRPC call to a hub serving the world's four adapters, made the
way a hall platform makes it, and printed as a clerk would read it:

1. one lookup of the showcase resident answers from all four departments at once
   (population, the company they represent, their property, their social insurance);
2. a lookup by a company's legacy organization code finds the business licence the
   registry files under the company's USCC;
3. the population registry is stopped: the same lookup comes back within its deadline,
   marked partial, with the other departments' records;
4. with ``max_staleness`` the hub serves the population record from its store instead,
   marked STALE_SERVED;

and, when asked, the registry is started again (`LookupStory.restore_department`).

    async with LookupStory(demo, server, console) as story:
        outcome = await story.run()

`run_lookup_story` starts a hub in this process for the world and tells the story.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import grpc
from google.protobuf import duration_pb2
from rich.console import Console
from rich.rule import Rule

from domain.errors import FailedPrecondition
from exchange.cli.client import print_lookup
from exchange.demo.launcher import ADAPTER_IDS, DemoWorld
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.hub import Hub
from exchange.server import HubServer

__all__ = ["STORY_PURPOSE", "LookupStory", "StoryOutcome", "run_lookup_story"]

STORY_PURPOSE: Final = common_pb2.Purpose(
    case_id="NJ-XW-2024-000123", reason="企业开办一件事 / opening a business in one visit"
)
# The operator's checks that the stopped registry is back are lookups too, and the
# access report shows them under their own purpose, not the clerk's case.
RECOVERY_CHECK_PURPOSE: Final = common_pb2.Purpose(
    case_id="OPS-RECOVERY-CHECK", reason="运维检查 / operator: is the population registry back?"
)
_OUTAGE_DEPARTMENT: Final = "population"


@dataclass(frozen=True)
class StoryOutcome:
    """The hub's answers at each step, for whoever tells the rest of the story."""

    resident: exchange_pb2.LookupResponse
    company: exchange_pb2.LookupResponse
    outage: exchange_pb2.LookupResponse
    outage_seconds: float
    stale: exchange_pb2.LookupResponse


def _outcome_name(status: common_pb2.SourceStatus) -> str:
    return common_pb2.SourceOutcome.Name(status.outcome).removeprefix("SOURCE_OUTCOME_")


def source_outcomes(response: exchange_pb2.LookupResponse) -> dict[str, str]:
    """Each consulted adapter's outcome (``OK``, ``ERROR``, ``STALE_SERVED``...) by id."""
    return {status.adapter_id: _outcome_name(status) for status in response.sources}


class LookupStory:
    """Tells the lookup steps against `demo` through the hub `server` serves.

    `deadline` is the seconds each lookup allows (the outage step shows the answer
    arrives within it); `max_staleness` is what the stale step allows, in seconds.
    Steps are public so a longer walkthrough can interleave its own; `first_step`
    numbers the first heading.
    """

    def __init__(
        self,
        demo: DemoWorld,
        server: HubServer,
        console: Console,
        *,
        deadline: float = 3.0,
        max_staleness: float = 3600.0,
        first_step: int = 1,
    ) -> None:
        self.demo = demo
        self.server = server
        self.console = console
        self.deadline = deadline
        self.max_staleness = max_staleness
        self.showcase = demo.showcase
        self._step = first_step
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel to the hub."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(None)

    @property
    def next_step(self) -> int:
        """The number the next heading gets."""
        return self._step

    async def run(self, *, restore: bool = True) -> StoryOutcome:
        """Tell every step in order; with `restore`, start the stopped registry again."""
        resident = await self.resident_in_one_call()
        company = await self.company_by_org_code()
        outage, seconds = await self.department_outage()
        stale = await self.served_stale()
        if restore:
            await self.restore_department()
        return StoryOutcome(resident, company, outage, seconds, stale)

    # --- the steps ----------------------------------------------------------------------

    async def resident_in_one_call(self) -> exchange_pb2.LookupResponse:
        """Step: one lookup by ID number; every department that knows the resident answers.

        The records are in the hub's store when this returns (the stale step needs them).
        """
        resident = self.showcase.resident
        self.heading("一次查询，四个部门 / One lookup, four departments")
        self.console.print(
            f"窗口人员为 {resident.name} 办理企业开办，按身份证号查询 / the clerk looks up "
            f"{resident.name} by ID number: [bold]{resident.id_card}[/]"
        )
        response, seconds = await self._lookup(common_pb2.KEY_KIND_ID_CARD, resident.id_card)
        print_lookup(response, self.console)
        departments = {r.provenance.department for r in response.records}
        self.console.print(
            f"{len(response.records)} records from {len(departments)} departments "
            f"in one call, {seconds * 1000:.0f} ms"
        )
        # Records are written behind the answer; the stale step below reads them back.
        await self.server.hub.writer.flush()
        return response

    async def company_by_org_code(self) -> exchange_pb2.LookupResponse:
        """Step: a legacy organization code finds the licence filed under the USCC."""
        company = self.showcase.company
        self.heading("旧组织机构代码查企业 / A legacy organization code finds the company")
        self.console.print(
            f"申请人只带来了旧的组织机构代码证 / the applicant brings the old organization "
            f"code certificate: [bold]{company.org_code}[/]"
        )
        response, _ = await self._lookup(common_pb2.KEY_KIND_ORG_CODE, company.org_code)
        print_lookup(response, self.console)
        for record in response.records:
            self.console.print(
                f"found {record.record_type} filed under USCC [bold]{record.subject.value}[/] "
                f"(the code embeds {company.org_code})"
            )
        return response

    async def department_outage(self) -> tuple[exchange_pb2.LookupResponse, float]:
        """Step: the population registry stops; the lookup is partial but in time.

        Returns the answer and the seconds it took.
        """
        name = _OUTAGE_DEPARTMENT
        self.heading("一个部门停机 / One department goes down")
        status = self.demo.stop_department(name)
        self.console.print(
            f"公安人口库停止服务 / the population registry is stopped (exit status {status}); "
            f"the clerk asks again with a {self.deadline:.0f} s deadline"
        )
        response, seconds = await self._lookup(common_pb2.KEY_KIND_ID_CARD, self.showcase.id_card)
        print_lookup(response, self.console)
        verdict = "partial" if response.partial else "complete"
        self.console.print(
            f"answered in {seconds:.2f} s, within the {self.deadline:.0f} s deadline: "
            f"{verdict}; {ADAPTER_IDS[name]} {source_outcomes(response).get(ADAPTER_IDS[name])}"
        )
        return response, seconds

    async def served_stale(self) -> exchange_pb2.LookupResponse:
        """Step: allowing staleness, the missing record comes from the hub's store."""
        self.heading("允许使用缓存 / Served from the store while the source is down")
        hours = self.max_staleness / 3600
        self.console.print(
            f"the clerk accepts data up to {hours:g} h old (max_staleness): the hub "
            "answers for the stopped registry from what it fetched before"
        )
        response, _ = await self._lookup(
            common_pb2.KEY_KIND_ID_CARD,
            self.showcase.id_card,
            max_staleness=self.max_staleness,
        )
        print_lookup(response, self.console)
        outcome = source_outcomes(response).get(ADAPTER_IDS[_OUTAGE_DEPARTMENT])
        self.console.print(f"{ADAPTER_IDS[_OUTAGE_DEPARTMENT]}: {outcome}")
        return response

    async def restore_department(self, *, within: float | None = None) -> None:
        """Start the stopped registry again and wait until the hub reaches it.

        The department is back once it answers (its READY line, printed when it
        serves); from then the hub needs at most its circuit's cool-down plus one
        reconnect (1 s). `within` (seconds after READY) defaults to twice that plus one
        lookup deadline, the slack a busy machine needs. Raises `FailedPrecondition`
        when the hub gets no answer from it in that time.
        """
        name = _OUTAGE_DEPARTMENT
        adapter_id = ADAPTER_IDS[name]
        self.demo.restart_department(name)
        if within is None:
            [adapter] = [a for a in self.server.hub.adapters if a.adapter_id == adapter_id]
            within = 2 * (adapter.spec.cooldown + 1.0) + self.deadline
        expires = time.monotonic() + within
        while True:
            response, _ = await self._lookup(
                common_pb2.KEY_KIND_ID_CARD,
                self.showcase.id_card,
                record_types=["population.resident"],
                purpose=RECOVERY_CHECK_PURPOSE,
            )
            if source_outcomes(response).get(adapter_id) == "OK":
                break
            if time.monotonic() > expires:
                raise FailedPrecondition(
                    f"the hub cannot reach {name} {within:.0f} s after its restart"
                )
            await asyncio.sleep(0.25)
        self.console.print("公安人口库恢复服务 / the population registry is back")

    # --- helpers ------------------------------------------------------------------------

    def heading(self, title: str) -> None:
        """Print the next numbered step heading (for steps told around the story's)."""
        self.console.print(Rule(f"{self._step}. {title}"))
        self._step += 1

    def _stub(self) -> exchange_pb2_grpc.ExchangeServiceAsyncStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        return exchange_pb2_grpc.ExchangeServiceStub(self._channel)

    async def _lookup(
        self,
        kind: common_pb2.KeyKind.ValueType,
        value: str,
        *,
        max_staleness: float = 0.0,
        record_types: list[str] | None = None,
        purpose: common_pb2.Purpose = STORY_PURPOSE,
    ) -> tuple[exchange_pb2.LookupResponse, float]:
        request = exchange_pb2.LookupRequest(
            subject=common_pb2.SubjectKey(kind=kind, value=value),
            record_types=record_types or [],
            purpose=purpose,
        )
        if max_staleness:
            request.max_staleness.CopyFrom(duration_pb2.Duration(seconds=int(max_staleness)))
        started = time.monotonic()
        response: exchange_pb2.LookupResponse = await self._stub().Lookup(
            request, timeout=self.deadline
        )
        return response, time.monotonic() - started


async def run_lookup_story(
    demo: DemoWorld, console: Console | None = None, **settings_overrides: Any
) -> StoryOutcome:
    """Start a hub in this process for the started `demo`, tell the story, stop the hub.

    `settings_overrides` go to `DemoWorld.settings` (``**{"database.url": ...}``).
    """
    console = console or Console()
    settings = demo.settings(**{"logging.level": "ERROR", **settings_overrides})
    server = HubServer(Hub.open(settings), "127.0.0.1:0")
    await server.start()
    console.print(Rule("Tongban demo world"))
    console.print(
        f"hub on 127.0.0.1:{server.port}; {len(demo.world.residents)} residents, "
        f"{len(demo.world.companies)} companies, {len(demo.world.titles)} titles; adapters: "
        + ", ".join(f"{a.id} ({a.kind})" for a in settings.adapters)
    )
    try:
        async with LookupStory(demo, server, console) as story:
            return await story.run()
    finally:
        await server.stop(grace=1)
