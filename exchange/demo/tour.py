"""`tongban demo`: the whole story of SPEC.md on the embedded default, step by step.

Four simulated departments run as their own processes behind four adapter kinds; a hub
(SQLite in the data folder) serves gRPC and its HTTP page in this process. Every step
is a real call made the way its user would make it: the clerk's lookups and the
issuer's certificate calls over gRPC, the verifier's offline check with the
`tongban verify` command, the operator's sync job watched over gRPC, the data
subject's access report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.rule import Rule
from rich.table import Table

from domain.errors import ConfigError
from exchange.auth.identity import issue_dev_token
from exchange.cli.client import print_lookup
from exchange.demo.launcher import ADAPTER_IDS, DemoWorld, department_uscc
from exchange.demo.story import STORY_PURPOSE, LookupStory
from exchange.demo.world import make_uscc
from exchange.generated import (
    audit_pb2,
    audit_pb2_grpc,
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from exchange.hub import Hub
from exchange.server import HubServer

LICENCE_TYPE = "11100000000013338W001"
LICENCE_FIELDS = {
    "name": "string",
    "legal_representative": "string",
    "registered_capital_cny": "integer",
    "established": "date",
    "address": "string",
}
LICENCE_OPTIONAL = {"business_scope": "string", "company_type": "string"}
TONGBAN = str(Path(sys.executable).parent / "tongban")
SOCIAL = "social_security.enrolment"
# The hall's approval platform: an identified caller (dev token) with a static policy.
HALL_USCC = make_uscc("11", "320102", "MB135792")
HALL_SYSTEM = "hall-approval"
HALL_NAME = "玄武区政务服务中心 / Xuanwu district service hall"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_table(checks: Any, console: Console) -> None:
    table = Table("check", "result", "detail")
    for check in checks:
        name = verification_pb2.CheckName.Name(check.check).removeprefix("CHECK_NAME_")
        table.add_row(name, "passed" if check.passed else "[red]FAILED[/]", check.reason)
    console.print(table)


def _run_cli(
    console: Console, *args: str, as_who: tuple[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `tongban ARGS` and print it; `as_who` is (who, dev token) to call as."""
    env = None
    prefix = ""
    if as_who is not None:
        env = {**os.environ, "TONGBAN_DEV_TOKEN": as_who[1]}
        prefix = f"TONGBAN_DEV_TOKEN=<{as_who[0]}> "
    shown = " ".join(f'"{a}"' if " " in a else a for a in args)
    console.print(f"$ {prefix}tongban {shown}", style="dim")
    done = subprocess.run([TONGBAN, *args], capture_output=True, text=True, check=False, env=env)
    console.print(done.stdout.rstrip() or done.stderr.rstrip())
    return done


class Tour:
    """The walkthrough against a started `DemoWorld` and a running hub."""

    def __init__(self, demo: DemoWorld, server: HubServer, console: Console, folder: Path):
        self.demo = demo
        self.server = server
        self.console = console
        self.folder = folder
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        self.story = LookupStory(demo, server, console)
        issuer = next(a for a in demo.adapter_settings() if a["id"] == ADAPTER_IDS["business"])
        self.issuer_uscc = str(issuer["department_uscc"])

    def heading(self, title: str) -> None:
        self.story.heading(title)

    async def run(self) -> None:
        resident = await self.story.resident_in_one_call()
        company = await self.story.company_by_org_code()
        certificate = await self.issue_licence(company)
        await self.verify_online(certificate)
        await self.verify_offline(certificate)
        await self.evidence(resident)
        await self.write_qr(certificate)
        await self.revoke_and_verify(certificate)
        await self.story.department_outage()
        await self.story.served_stale()
        await self.story.restore_department()
        await self.sync_job()
        await self.conditional_sharing()
        await self.access_report()

    async def issue_licence(
        self, company: exchange_pb2.LookupResponse
    ) -> certificates_pb2.Certificate:
        self.heading("The market-regulation department issues a business-licence e-certificate")
        record = next(r for r in company.records if r.record_type == "market.business_license")
        known = json_format.MessageToDict(record.fields)
        values = {n: known[n] for n in (*LICENCE_FIELDS, *LICENCE_OPTIONAL) if n in known}
        if "registered_capital_cny" in values:
            # A protobuf Struct carries numbers as doubles; the licence declares an integer.
            values["registered_capital_cny"] = int(values["registered_capital_cny"])
        fields = struct_pb2.Struct()
        fields.update(values)
        holder = next(
            s
            for s in (record.subject, *record.related_subjects)
            if s.kind == common_pb2.KEY_KIND_USCC
        )
        answer = await certificates_pb2_grpc.CertificateServiceStub(self.channel).Issue(
            certificates_pb2.IssueRequest(
                request_id=f"demo-licence-{holder.value}",
                type_code=LICENCE_TYPE,
                holder=holder,
                issuer_uscc=self.issuer_uscc,
                fields=fields,
            ),
            timeout=10,
        )
        certificate = answer.certificate
        self.console.print(f"issued {certificate.type_name} [bold]{certificate.id}[/]")
        self.console.print(f"compact token ({len(certificate.token)} characters) signed with EdDSA")
        return certificate

    async def verify_online(self, certificate: certificates_pb2.Certificate) -> None:
        self.heading("A bank clerk verifies it online with the hub")
        answer = await verification_pb2_grpc.VerificationServiceStub(self.channel).Verify(
            verification_pb2.VerifyRequest(token=certificate.token), timeout=10
        )
        self.console.print(f"valid: [bold]{answer.verdict.valid}[/]")
        _check_table(answer.verdict.checks, self.console)

    async def verify_offline(self, certificate: certificates_pb2.Certificate) -> None:
        self.heading("...and offline, with the trust bundle exported to files")
        trust = self.folder / "trust"
        token_file = self.folder / "licence.jws"
        token_file.write_text(certificate.token, encoding="utf-8")
        hub = f"127.0.0.1:{self.server.port}"
        await asyncio.to_thread(
            _run_cli, self.console, "trust", "export", "--out", str(trust), "--hub", hub
        )
        await asyncio.to_thread(self._verify_file, token_file, trust)

    async def evidence(self, answer: exchange_pb2.LookupResponse) -> None:
        """Step: the first lookup's receipt and the registry's signature, checked offline."""
        self.heading(
            "留痕可证 / The hall keeps evidence: the hub's receipt, the registry's signature"
        )
        receipt, answer_file = self.folder / "lookup.receipt", self.folder / "lookup.answer.json"
        receipt.write_text(answer.receipt + "\n", encoding="ascii")
        answer_file.write_text(json_format.MessageToJson(answer, ensure_ascii=False), "utf-8")
        signed = sum(1 for r in answer.records if r.provenance.department_signature)
        self.console.print(
            f"the answer carries the hub's signed receipt; {signed} record(s) carry their "
            "department's own signature. Checked offline with the exported trust folder:"
        )
        await asyncio.to_thread(
            _run_cli, self.console, "receipt", "verify", str(receipt),
            "--answer", str(answer_file), "--bundle", str(self.folder / "trust"),
        )  # fmt: skip

    def _verify_file(self, token_file: Path, trust: Path) -> subprocess.CompletedProcess[str]:
        return _run_cli(
            self.console, "verify", str(token_file),
            "--bundle", str(trust / "trust-bundle.jws"),
            "--status", str(trust / "status-list.jws"),
            "--root", str(trust / "root.jwk.json"),
        )  # fmt: skip

    async def write_qr(self, certificate: certificates_pb2.Certificate) -> None:
        self.heading("Its QR code, for the paper copy")
        out = self.folder / "licence-qr.png"
        hub = f"127.0.0.1:{self.server.port}"
        await asyncio.to_thread(
            _run_cli, self.console, "cert", "qr", certificate.id, "--out", str(out), "--hub", hub
        )
        self.console.print(
            f"verification page for people: http://127.0.0.1:{self.server.web.port}/v/{certificate.id}"
        )

    async def revoke_and_verify(self, certificate: certificates_pb2.Certificate) -> None:
        self.heading("The licence is revoked; verification now fails on STATUS")
        await certificates_pb2_grpc.CertificateServiceStub(self.channel).Revoke(
            certificates_pb2.RevokeRequest(certificate_id=certificate.id, reason="吊销 / revoked"),
            timeout=10,
        )
        answer = await verification_pb2_grpc.VerificationServiceStub(self.channel).Verify(
            verification_pb2.VerifyRequest(certificate_id=certificate.id), timeout=10
        )
        self.console.print(f"valid: [bold red]{answer.verdict.valid}[/]")
        _check_table(answer.verdict.checks, self.console)
        trust = self.folder / "trust-refreshed"
        hub = f"127.0.0.1:{self.server.port}"
        self.console.print("offline, after refreshing the status list:")
        await asyncio.to_thread(
            _run_cli, self.console, "trust", "export", "--out", str(trust), "--hub", hub
        )
        await asyncio.to_thread(self._verify_file, self.folder / "licence.jws", trust)

    async def sync_job(self) -> None:
        self.heading("The operator syncs the national social-security exports into the store")
        sync = sync_pb2_grpc.SyncServiceStub(self.channel)
        started = await sync.Start(
            sync_pb2.SyncServiceStartRequest(
                adapter_id=ADAPTER_IDS["social-security"], mode=sync_pb2.SYNC_MODE_FULL
            ),
            timeout=10,
        )
        job = started.job
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8} rec/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task(job.adapter_id, total=None, rate="-")
            async for update in sync.Watch(
                sync_pb2.SyncServiceWatchRequest(job_id=job.job_id), timeout=120
            ):
                job = update.job
                done = job.progress.records_seen
                progress.update(
                    task,
                    completed=done,
                    total=job.progress.total_estimate or (done if job.finished_at else None),
                    rate=f"{_shown_rate(job):,.0f}",
                )
        state = sync_pb2.SyncJobState.Name(job.state).removeprefix("SYNC_JOB_STATE_")
        p = job.progress
        self.console.print(
            f"job {job.job_id} {state}: {p.records_seen} records read, {p.applied} applied, "
            f"{p.unchanged} unchanged, {p.dead_lettered} dead-lettered (malformed rows), "
            f"{p.withdrawn} withdrawn"
        )

    def _token(self, organization: str, system: str) -> str:
        secret = self.server.hub.settings.security.dev_token_secret
        assert secret is not None  # demo_settings sets one
        return issue_dev_token(secret.get_secret_value().encode(), organization, system)

    async def _hall_lookup(self, token: str) -> exchange_pb2.LookupResponse:
        return await exchange_pb2_grpc.ExchangeServiceStub(self.channel).Lookup(
            exchange_pb2.LookupRequest(
                subject=common_pb2.SubjectKey(
                    kind=common_pb2.KEY_KIND_ID_CARD, value=self.demo.showcase.id_card
                ),
                record_types=["population.resident", SOCIAL],
                purpose=STORY_PURPOSE,
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )

    async def conditional_sharing(self) -> None:
        """Step: a conditionally shared record type, applied for and granted narrower."""
        self.heading(
            "有条件共享：先申请，后使用 / Conditional data: the hall applies, the ministry decides"
        )
        hall = (f"{HALL_NAME}", self._token(HALL_USCC, HALL_SYSTEM))
        ministry_uscc = department_uscc("social-security")
        ministry = ("人社部 / MOHRSS", self._token(ministry_uscc, "sharing-desk"))
        hub = f"127.0.0.1:{self.server.port}"
        self.console.print(
            f"the hall's platform ({HALL_USCC}/{HALL_SYSTEM}) now calls as itself, under its "
            "access policy; social-insurance enrolments are conditionally shared (有条件共享)"
        )
        print_lookup(await self._hall_lookup(hall[1]), self.console)
        await asyncio.to_thread(_run_cli, self.console, "catalog", "show", SOCIAL, "--hub", hub,
                                as_who=hall)  # fmt: skip
        applied = await asyncio.to_thread(
            _run_cli, self.console, "access", "apply", SOCIAL,
            "--field", "insurance", "--field", "status", "--field", "since",
            "--field", "employer",
            "--purpose", "就业登记核验 / checking the applicant's employment",
            "--legal-basis", "《就业服务与就业管理规定》", "--days", "90",
            "--contact", "玄武区政务服务中心 3 号窗口", "--hub", hub, as_who=hall,
        )  # fmt: skip
        found = re.search(r"application (\S+) PENDING", applied.stdout)
        if found is None:
            self.console.print("[red]the application was not filed[/]")
            return
        application_id = found.group(1)
        self.console.print("the ministry's sharing desk lists what awaits its decision:")
        await asyncio.to_thread(_run_cli, self.console, "access", "list", "--role", "owner",
                                "--state", "PENDING", "--hub", hub, as_who=ministry)  # fmt: skip
        granted = ("insurance", "status")
        await asyncio.to_thread(
            _run_cli, self.console, "access", "decide", application_id, "--approve",
            *[a for name in granted for a in ("--field", f"{SOCIAL}:{name}")],
            "--days", "30", "--reason", "仅核验参保状态 / only the enrolment status is needed",
            "--hub", hub, as_who=ministry,
        )  # fmt: skip
        self.console.print("the clerk looks the resident up again:")
        answer = await self._hall_lookup(hall[1])
        print_lookup(answer, self.console)
        returned = {
            name
            for record in answer.records
            if record.record_type == SOCIAL
            for name in json_format.MessageToDict(record.fields)
        }
        if returned == set(granted):
            self.console.print(
                f"exactly the granted fields came back ({', '.join(granted)}), for 30 days; "
                "the ministry can revoke the grant at any time (`tongban access revoke`)"
            )
        else:
            self.console.print(f"[red]returned fields {sorted(returned)} != granted {granted}[/]")

    async def access_report(self) -> None:
        self.heading("The resident asks who looked at their data, and why")
        answer = await audit_pb2_grpc.AuditServiceStub(self.channel).ListAccess(
            audit_pb2.ListAccessRequest(
                subject=common_pb2.SubjectKey(
                    kind=common_pb2.KEY_KIND_ID_CARD, value=self.demo.showcase.id_card
                )
            ),
            timeout=10,
        )
        table = Table("when (UTC)", "who", "case", "outcome", "record types read")
        for entry in answer.entries:
            table.add_row(
                entry.at.ToDatetime().strftime("%H:%M:%S"),
                entry.caller,
                entry.purpose.case_id,
                entry.outcome,
                "\n".join(entry.record_types),
            )
        self.console.print(table)
        cases = {entry.purpose.case_id: entry.purpose.reason for entry in answer.entries}
        for case_id, reason in cases.items():
            self.console.print(f"purpose of {case_id}: {reason}")

    async def aclose(self) -> None:
        await self.story.aclose()
        await self.channel.close(None)


DEMO_MARKER = ".tongban-demo"
# What a run leaves in its folder; a folder holding only these (an earlier version of
# the demo wrote no marker) is a demo's too.
DEMO_ENTRIES = frozenset(
    {
        DEMO_MARKER,
        "departments",
        "hub",
        "licence.jws",
        "licence-qr.png",
        "lookup.answer.json",
        "lookup.receipt",
        "trust",
        "trust-refreshed",
    }
)


def _fresh_folder(folder: Path) -> None:
    """Empty `folder` (made by an earlier demo) or create it: each run tells the story
    from the beginning, on a new world and a new store.

    Raises `ConfigError` when `folder` holds files no demo made: they are not deleted.
    """
    held = {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
    if not held <= DEMO_ENTRIES:
        raise ConfigError(
            "--data-dir",
            f"{folder} holds files the demo did not make; name a new or empty folder "
            "(the demo empties its folder at every start)",
        )
    try:
        if held:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / DEMO_MARKER).write_text(
            "made by `tongban demo`, which empties this folder at every start\n", encoding="utf-8"
        )
    except OSError as exc:
        raise ConfigError(
            "--data-dir", f"cannot use {folder} as the demo's folder: {exc.strerror or exc}"
        ) from exc


def _shown_rate(job: sync_pb2.SyncJob) -> float:
    """The job's current rate while it runs; once it ended, its average over the run."""
    if job.HasField("started_at") and job.HasField("finished_at"):
        took = (job.finished_at.ToDatetime() - job.started_at.ToDatetime()).total_seconds()
        if took > 0:
            return job.progress.records_seen / took
    return job.progress.records_per_second


def demo_settings(demo: DemoWorld, folder: Path, http_port: int) -> Any:
    """Hub settings for the world: its adapters, the licence type, the public page."""
    issuer = next(a for a in demo.adapter_settings() if a["id"] == ADAPTER_IDS["business"])
    return demo.settings(
        data_dir=str(folder / "hub"),
        certificate_types={
            LICENCE_TYPE: {
                "name": "营业执照",
                "holder_kind": "USCC",
                "issuer_uscc": issuer["department_uscc"],
                "issuer_department": issuer["department"],
                "fields": LICENCE_FIELDS,
                "optional_fields": LICENCE_OPTIONAL,
            }
        },
        policies=[
            {
                "caller": f"{HALL_USCC}/{HALL_SYSTEM}",
                "rpcs": ["ExchangeService/*", "CertificateService/Get"],
                "record_types": {
                    "population.resident": ["*"],
                    "market.business_license": ["*"],
                    "realestate.title": ["*"],
                },
            }
        ],
        **{
            "logging.level": "ERROR",
            "signing.public_url": f"http://127.0.0.1:{http_port}",
            # Callers in the conditional-sharing step identify themselves by dev token;
            # every other step calls anonymously, as dev mode allows.
            "security.dev_token_secret": secrets.token_urlsafe(24),
        },
    )


async def run_tour(
    folder: Path,
    *,
    console: Console | None = None,
    keep_running: bool = False,
    residents: int = 3000,
    companies: int = 600,
) -> None:
    """Start the world and a hub in `folder`, tell the story, stop everything."""
    console = console or Console()
    await asyncio.to_thread(_fresh_folder, folder)
    console.print(Rule("Tongban demo: 通办, handled in one place"))
    console.print("starting four department systems, each its own process ...")
    with DemoWorld(folder, residents=residents, companies=companies) as demo:
        http_port = _free_port()
        settings = demo_settings(demo, folder, http_port)
        server = HubServer(Hub.open(settings), "127.0.0.1:0", f"127.0.0.1:{http_port}")
        await server.start()
        console.print(
            f"hub: gRPC 127.0.0.1:{server.port}, page and metrics http://127.0.0.1:{http_port}/ ; "
            f"store {settings.database_url}"
        )
        console.print(
            "departments: "
            + ", ".join(f"{a.id} ({a.kind})" for a in settings.adapters)
            + f"; case {STORY_PURPOSE.case_id}"
        )
        tour = Tour(demo, server, console, folder)
        try:
            await tour.run()
            console.print(Rule("demo finished"))
            if keep_running:
                console.print(
                    f"the world stays up: try `tongban status --hub 127.0.0.1:{server.port}` or "
                    f"`grpcurl -plaintext 127.0.0.1:{server.port} list`; Ctrl-C stops everything"
                )
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
        finally:
            await tour.aclose()
            await server.stop(grace=1)
