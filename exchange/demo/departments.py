"""Four simulated department systems, each run as a separate process.

    python -m exchange.demo.departments NAME --data-dir DIR [--seed N] [--port 0]

Every department builds the demo world from the seed (`exchange.demo.world`), starts
serving, prints one line ``READY {json}`` on stdout with what the hub needs to reach it,
and serves until SIGTERM or SIGINT, then exits 0. Nothing else is written to stdout;
notes about live changes go to stderr.

- ``population``: public security's population registry, a gRPC
  ``tongban.v1.DepartmentAdapter`` service. ``Fetch`` by ID_CARD answers
  ``population.resident``; ``Changes`` streams every resident in record-id order, and
  its cursor (the last record id sent) resumes exactly after it. READY:
  ``{"port", "target"}``.
- ``business``: market regulation's business registry, which owns a SQLite database
  (``DIR/registry.db``, its table rebuilt from the world at start, WAL mode) with the table
  `BUSINESS_TABLE`. Every ``--change-interval`` seconds (default 5) it changes one
  company (status, capital or address) and stamps ``last_modified``, so sync jobs have
  something incremental to pick up. Its database file outlives the process, as a
  database server would. READY: ``{"database", "url", "table"}``.
- ``realestate``: natural resources' real-estate registry, a JSON API (see
  `RealEstateApi`) that needs ``Authorization: Bearer <token>``. The token comes from
  the environment variable `REALESTATE_TOKEN_ENV`; when it is unset a token is made up
  and shown in the READY line. READY: ``{"port", "base_url", "token"?}``.
- ``social-security``: the national vertical social-insurance system, which writes CSV
  exports (UTF-8 with BOM, Chinese headers) into ``DIR/exports``: a full export at start
  (old exports are removed) and a small delta every ``--change-interval`` seconds
  (default 10), named ``enrolment-<UTC time>-<sequence>-<full|delta>.csv`` so that
  names sort by time. READY: ``{"folder", "pattern"}``.

With ``--exit-with-parent`` a department also stops when the process that started it
dies, so a killed launcher leaves nothing behind.
"""

from __future__ import annotations

import abc
import argparse
import bisect
import csv
import hashlib
import hmac
import io
import json
import os
import random
import secrets
import signal
import sqlite3
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Final

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from exchange.demo.world import (
    DEFAULT_COMPANIES,
    DEFAULT_RESIDENTS,
    DEFAULT_SEED,
    PENSION,
    Company,
    Enrolment,
    RealEstateTitle,
    Resident,
    World,
    generate_world,
)
from exchange.generated import adapters_pb2, adapters_pb2_grpc, common_pb2
from signing.department import sign_record
from signing.keys import SigningKey, SoftwareSigningKey

__all__ = [
    "BUSINESS_TABLE",
    "DEPARTMENTS",
    "EXPORT_COLUMNS",
    "EXPORT_PATTERN",
    "REALESTATE_TOKEN_ENV",
    "BusinessRegistry",
    "PopulationRegistry",
    "RealEstateApi",
    "SimulatedDepartment",
    "SocialSecurityExports",
    "build_department",
    "main",
]

DEPARTMENTS: Final = ("population", "business", "realestate", "social-security")
REALESTATE_TOKEN_ENV: Final = "DEMO_REALESTATE_TOKEN"  # noqa: S105 - a variable name
BUSINESS_TABLE: Final = "t_qyjbxx"
EXPORT_PATTERN: Final = "enrolment-*.csv"
EXPORT_COLUMNS: Final = (
    "参保编号",
    "姓名",
    "证件类型",
    "证件号码",
    "险种",
    "参保状态",
    "参保日期",
    "单位名称",
    "单位统一社会信用代码",
    "缴费基数",
    "变更时间",
)
RESIDENT_TYPE: Final = "population.resident"
_DEFAULT_CHANGE_INTERVAL: Final = {"business": 5.0, "social-security": 10.0}
_BEIJING: Final = timezone(timedelta(hours=8))
_LOOPBACK: Final = "127.0.0.1"
_MAX_BATCH: Final = 1000


def beijing_now() -> datetime:
    """The current Beijing time without an offset, as the registries store times."""
    return datetime.now(_BEIJING).replace(tzinfo=None)


def _stored_time(moment: datetime) -> str:
    # One fixed width, so text order is time order (the sql adapter pages by it).
    return moment.isoformat(sep=" ", timespec="microseconds")


class SimulatedDepartment(abc.ABC):
    """A department system: started once, ticked while it runs, stopped once."""

    name: str

    @abc.abstractmethod
    def start(self) -> dict[str, Any]:
        """Start serving; return what the hub needs to reach the department.

        Raises `OSError` when the department cannot listen or write its files.
        """

    def tick(self, now: datetime) -> None:  # noqa: B027 - most departments change nothing
        """Apply the changes due at `now` (Beijing time)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release what the department holds."""


# --- public security: population registry over gRPC -------------------------------------


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.replace(tzinfo=_BEIJING).astimezone(UTC))
    return stamp


def resident_record(resident: Resident) -> adapters_pb2.SourceRecord:
    """The population registry's record of `resident`, named as the record type declares."""
    fields = struct_pb2.Struct()
    fields.update(
        {
            "name": resident.name,
            "gender": resident.gender,
            "birth_date": resident.birth_date.isoformat(),
            "ethnicity": resident.ethnicity,
            "household_address": resident.household_address,
            "household_division": resident.division.code,
        }
    )
    return adapters_pb2.SourceRecord(
        record_type=RESIDENT_TYPE,
        source_record_id=resident.population_record_id,
        subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=resident.id_card),
        fields=fields,
        updated_at=_timestamp(resident.population_updated_at),
    )


def signed_record(record: adapters_pb2.SourceRecord, key: SigningKey) -> adapters_pb2.SourceRecord:
    """`record` with the registry's own signature (`signing.department`) over it."""
    fields = {
        name: int(value) if isinstance(value, float) and value.is_integer() else value
        for name, value in json_format.MessageToDict(record.fields).items()
    }
    record.signature = sign_record(
        key,
        record.record_type,
        record.source_record_id,
        f"ID_CARD:{record.subject.value}",
        fields,
        datetime.now(UTC),
    )
    return record


class _PopulationService(adapters_pb2_grpc.DepartmentAdapterServicer):
    def __init__(self, residents: Sequence[Resident], key: SigningKey | None = None) -> None:
        self.key = key
        ordered = sorted(residents, key=lambda r: r.population_record_id)
        self.by_id_card = {r.id_card: r for r in ordered}
        self.record_ids = [r.population_record_id for r in ordered]
        self.ordered = ordered

    def Fetch(
        self, request: adapters_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> adapters_pb2.FetchResponse:
        if not request.purpose.case_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "purpose.case_id is required")
        wanted = not request.record_types or RESIDENT_TYPE in request.record_types
        if request.subject.kind != common_pb2.KEY_KIND_ID_CARD or not wanted:
            return adapters_pb2.FetchResponse()
        resident = self.by_id_card.get(request.subject.value)
        if resident is None:
            return adapters_pb2.FetchResponse()
        record = resident_record(resident)
        if self.key is not None:  # the registry signs what it answers (not its bulk feed)
            record = signed_record(record, self.key)
        return adapters_pb2.FetchResponse(records=[record])

    def Changes(
        self, request: adapters_pb2.ChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[adapters_pb2.ChangesResponse]:
        # The cursor is the last record id sent: the stream resumes right after it.
        start = bisect.bisect_right(self.record_ids, request.cursor) if request.cursor else 0
        size = min(max(1, request.batch_size or 100), _MAX_BATCH)
        total = len(self.ordered) - start
        for first in range(start, len(self.ordered), size):
            batch = self.ordered[first : first + size]
            yield adapters_pb2.ChangesResponse(
                changes=[
                    adapters_pb2.Change(
                        kind=adapters_pb2.CHANGE_KIND_UPSERT, record=resident_record(r)
                    )
                    for r in batch
                ],
                cursor=batch[-1].population_record_id,
                total_estimate=total,
            )


class PopulationRegistry(SimulatedDepartment):
    """Public security's population registry: a `DepartmentAdapter` gRPC service."""

    name = "population"

    def __init__(self, world: World, port: int = 0) -> None:
        # The registry's record-signing key: derived from the world's seed, so a restarted
        # registry signs with the key the hub was configured with (a demo, not a secret).
        seed = hashlib.sha256(f"tongban-demo-population-key:{world.seed}".encode()).digest()
        self.key: SigningKey = SoftwareSigningKey(Ed25519PrivateKey.from_private_bytes(seed))
        self.service = _PopulationService(world.registered_residents, self.key)
        self.requested_port = port
        self.server: grpc.Server | None = None

    def start(self) -> dict[str, Any]:
        server = grpc.server(
            ThreadPoolExecutor(max_workers=8, thread_name_prefix="population"),
            # A second registry on the same port must fail, not share it.
            options=[("grpc.so_reuseport", 0)],
        )
        adapters_pb2_grpc.add_DepartmentAdapterServicer_to_server(self.service, server)
        port = server.add_insecure_port(f"{_LOOPBACK}:{self.requested_port}")
        if port == 0:
            raise OSError(f"cannot listen on {_LOOPBACK}:{self.requested_port}")
        server.start()
        self.server = server
        return {
            "port": port,
            "target": f"{_LOOPBACK}:{port}",
            "department_key": self.key.public_jwk(),
        }

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=1.0).wait(timeout=5)
            self.server = None


# --- market regulation: business registry in its own database -----------------------------

_BUSINESS_SCHEMA: Final = f"""
CREATE TABLE {BUSINESS_TABLE} (
    id INTEGER PRIMARY KEY,          -- 记录编号
    tyshxydm TEXT NOT NULL UNIQUE,   -- 统一社会信用代码
    zzjgdm TEXT NOT NULL,            -- 组织机构代码
    qymc TEXT NOT NULL,              -- 企业名称
    qylx TEXT NOT NULL,              -- 企业类型
    fddbr TEXT NOT NULL,             -- 法定代表人
    fddbr_zjhm TEXT NOT NULL,        -- 法定代表人证件号码
    zczb INTEGER NOT NULL,           -- 注册资本（元）
    clrq TEXT NOT NULL,              -- 成立日期
    djzt TEXT NOT NULL,              -- 登记状态
    zs TEXT NOT NULL,                -- 住所
    jyfw TEXT NOT NULL,              -- 经营范围
    djjg TEXT NOT NULL,              -- 登记机关
    last_modified TEXT NOT NULL      -- 最后修改时间（北京时间）
);
CREATE INDEX ix_{BUSINESS_TABLE}_zzjgdm ON {BUSINESS_TABLE} (zzjgdm);
CREATE INDEX ix_{BUSINESS_TABLE}_fddbr_zjhm ON {BUSINESS_TABLE} (fddbr_zjhm);
CREATE INDEX ix_{BUSINESS_TABLE}_changes ON {BUSINESS_TABLE} (last_modified, id);
"""
_STATUS_CHANGES: Final = {"存续": ("吊销", "注销", "迁出"), "在业": ("存续", "吊销")}


def business_row(company: Company) -> dict[str, Any]:
    """The business registry's row for `company`."""
    return {
        "id": company.registry_id,
        "tyshxydm": company.uscc,
        "zzjgdm": company.org_code,
        "qymc": company.name,
        "qylx": company.company_type,
        "fddbr": company.legal_representative.name,
        "fddbr_zjhm": company.legal_representative.id_card,
        "zczb": company.registered_capital_cny,
        "clrq": company.established.isoformat(),
        "djzt": company.status,
        "zs": company.address,
        "jyfw": company.business_scope,
        "djjg": company.registration_authority,
        "last_modified": _stored_time(company.last_modified),
    }


class BusinessRegistry(SimulatedDepartment):
    """Market regulation's registry: its own SQLite database, changed while it runs."""

    name = "business"

    def __init__(self, world: World, data_dir: Path, change_interval: float) -> None:
        self.world = world
        self.database = (data_dir / "registry.db").resolve()
        self.change_interval = change_interval
        self.changes_made = 0
        # The showcase company keeps its data, so the story's answers stay predictable.
        showcase = world.showcase().company.registry_id
        self.changeable = [c.registry_id for c in world.companies if c.registry_id != showcase]
        self._rng = random.Random(f"{world.seed}:business-changes")
        self._connection: sqlite3.Connection | None = None
        self._next_change: datetime | None = None
        self._last_stamp = datetime.min

    def start(self) -> dict[str, Any]:
        self.database.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.database, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        rows = [business_row(c) for c in self.world.companies]
        columns = list(rows[0])
        # Rebuilt in one transaction, in place: a hub reading the file sees the old
        # table or the new one, never a missing or half-filled one.
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"DROP TABLE IF EXISTS {BUSINESS_TABLE}")
        for statement in _BUSINESS_SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.executemany(
            f"INSERT INTO {BUSINESS_TABLE} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})",
            rows,
        )
        connection.execute("COMMIT")
        self._connection = connection
        self._last_stamp = max(c.last_modified for c in self.world.companies)
        return {
            "database": str(self.database),
            "url": f"sqlite:///{self.database}",
            "table": BUSINESS_TABLE,
        }

    def tick(self, now: datetime) -> None:
        if self.change_interval <= 0 or self._connection is None:
            return
        if self._next_change is None:
            self._next_change = now + timedelta(seconds=self.change_interval)
        elif now >= self._next_change:
            self._next_change = now + timedelta(seconds=self.change_interval)
            self.change_one(now)

    def change_one(self, now: datetime) -> str:
        """Change one company now and return what changed; the change is committed."""
        assert self._connection is not None
        registry_id = self._rng.choice(self.changeable)
        status, capital, address = self._connection.execute(
            f"SELECT djzt, zczb, zs FROM {BUSINESS_TABLE} WHERE id = ?", (registry_id,)
        ).fetchone()
        # Stamps never go backwards, even if the clock does: sync pages by them.
        stamp = max(now, self._last_stamp + timedelta(microseconds=1))
        self._last_stamp = stamp
        roll = self._rng.random()
        if status in _STATUS_CHANGES and roll < 0.5:
            column, value = "djzt", self._rng.choice(_STATUS_CHANGES[status])
        elif roll < 0.8:
            column, value = "zczb", capital + self._rng.randint(1, 20) * 100_000
        else:
            column, value = "zs", f"{address.split('号')[0]}号{self._rng.randint(2, 30)}楼"
        self._connection.execute(
            f"UPDATE {BUSINESS_TABLE} SET {column} = ?, last_modified = ? WHERE id = ?",
            (value, _stored_time(stamp), registry_id),
        )
        self.changes_made += 1
        note = f"change {self.changes_made}: company #{registry_id} {column} -> {value}"
        print(f"business: {note}", file=sys.stderr, flush=True)
        return note

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# --- natural resources: real-estate registry over HTTP -----------------------------------


def title_item(title: RealEstateTitle) -> dict[str, Any]:
    """The real-estate API's JSON object for `title`."""
    return {
        "titleId": title.title_id,
        "certNo": title.certificate_number,
        "unitNo": title.unit_number,
        "owner": {"name": title.owner.name, "idType": "居民身份证", "idNo": title.owner.id_card},
        "coOwnership": title.co_ownership,
        "location": title.location,
        "area": title.area_m2,
        "usage": title.usage,
        "rightType": title.right_type,
        "rightNature": title.right_nature,
        "registerDate": title.registered_on.isoformat(),
        "updateTime": title.updated_at.replace(tzinfo=_BEIJING).isoformat(),
    }


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer is no news for a demo registry.
        pass


class RealEstateApi(SimulatedDepartment):
    """Natural resources' real-estate registry as a JSON API.

    - ``GET /api/v1/titles?keyType=<kind>&keyValue=<key>``: titles by REAL_ESTATE_CERT,
      owner's ID_CARD or REAL_ESTATE_UNIT, as ``{"code": 0, "data": {"total", "records"}}``
      (an empty list when there are none; 400 for another key type);
    - ``GET /api/v1/titles/changes?cursor=<c>&size=<n>``: every title, oldest change
      first, as ``{"code": 0, "data": {"records", "nextCursor", "hasMore"}}``;
    - ``GET /healthz``: 200, no token needed.

    Every other request needs ``Authorization: Bearer <token>``, else 401.
    """

    name = "realestate"

    def __init__(self, world: World, token: str | None, port: int = 0) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.token_generated = token is None
        self.requested_port = port
        titles = sorted(world.titles, key=lambda t: (t.updated_at, t.title_id))
        self.changes = [title_item(t) for t in titles]
        self.index: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in self.changes:
            for kind, key in (
                ("REAL_ESTATE_CERT", item["certNo"]),
                ("ID_CARD", item["owner"]["idNo"]),
                ("REAL_ESTATE_UNIT", item["unitNo"]),
            ):
                self.index.setdefault((kind, key), []).append(item)
        self.server: _QuietServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> dict[str, Any]:
        server = _QuietServer((_LOOPBACK, self.requested_port), self._handler())
        self.server = server
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="realestate"
        )
        self.thread.start()
        port = server.server_address[1]
        info: dict[str, Any] = {"port": port, "base_url": f"http://{_LOOPBACK}:{port}"}
        if self.token_generated:
            info["token"] = self.token
        return info

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for a GET of `path` (with its query)."""
        url = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/healthz":
            return 200, {"code": 0, "message": "ok"}
        expected = f"Bearer {self.token}"
        if authorization is None or not hmac.compare_digest(authorization, expected):
            return 401, {"code": 401, "message": "令牌无效 / invalid or missing token"}
        if url.path == "/api/v1/titles":
            kind, key = query.get("keyType", ""), query.get("keyValue", "")
            if kind not in ("REAL_ESTATE_CERT", "ID_CARD", "REAL_ESTATE_UNIT"):
                return 400, {
                    "code": 400,
                    "message": f"不支持的查询类型 / unsupported keyType {kind!r}",
                }
            records = self.index.get((kind, key), [])
            return 200, {
                "code": 0,
                "message": "成功",
                "data": {"total": len(records), "records": records},
            }
        if url.path == "/api/v1/titles/changes":
            try:
                start = int(query.get("cursor") or 0)
                size = min(max(1, int(query.get("size") or 100)), _MAX_BATCH)
            except ValueError:
                return 400, {"code": 400, "message": "cursor and size must be integers"}
            if not 0 <= start <= len(self.changes):
                return 400, {"code": 400, "message": "cursor out of range"}
            end = min(start + size, len(self.changes))
            data = {
                "records": self.changes[start:end],
                "nextCursor": str(end),
                "hasMore": end < len(self.changes),
            }
            return 200, {"code": 0, "message": "成功", "data": data}
        return 404, {"code": 404, "message": "no such API"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "RealEstateRegistry/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # requests name identifiers; a registry does not print them

            def do_GET(self) -> None:
                status, body = api.answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


# --- the national vertical system: social-insurance exports ------------------------------


def export_row(enrolment: Enrolment) -> dict[str, str]:
    """The export's row for `enrolment`, every value as text (empty when absent)."""
    employer = enrolment.employer
    base = enrolment.contribution_base_cny
    return {
        "参保编号": enrolment.enrolment_number,
        "姓名": enrolment.insured.name,
        "证件类型": "居民身份证",
        "证件号码": enrolment.insured.id_card,
        "险种": enrolment.insurance,
        "参保状态": enrolment.status,
        "参保日期": enrolment.since.isoformat(),
        "单位名称": employer.name if employer else "",
        "单位统一社会信用代码": employer.uscc if employer else "",
        "缴费基数": str(base) if base is not None else "",
        "变更时间": enrolment.changed_at.isoformat(sep=" ", timespec="seconds"),
    }


def write_export(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """Write `rows` as a CSV export (UTF-8 with BOM) that appears whole or not at all."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    # Written aside, then renamed: a reader never sees half a file.
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text.getvalue(), encoding="utf-8-sig", newline="")
    os.replace(partial, path)


class SocialSecurityExports(SimulatedDepartment):
    """The national social-insurance system: a full CSV export, then periodic deltas."""

    name = "social-security"

    def __init__(self, world: World, data_dir: Path, change_interval: float) -> None:
        self.world = world
        self.folder = (data_dir / "exports").resolve()
        self.change_interval = change_interval
        self.current = {e.enrolment_number: e for e in world.enrolments}
        showcase = world.showcase().resident.id_card
        self.changeable = sorted(
            number
            for number, e in self.current.items()
            if e.insured.id_card != showcase and e.insurance == PENSION and e.employer is not None
        )
        self.employers = [c for c in world.companies if c.status in ("存续", "在业")]
        self.exports_written = 0
        self._rng = random.Random(f"{world.seed}:social-security-deltas")
        self._next_export: datetime | None = None

    def start(self) -> dict[str, Any]:
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(EXPORT_PATTERN):
            old.unlink()
        rows = [export_row(e) for e in self.world.enrolments]
        for malformed in self.world.malformed_export_rows:
            row = export_row(malformed.enrolment)
            row[malformed.column] = malformed.text
            rows.append(row)
        rows.sort(key=lambda row: row["参保编号"])
        self._write(rows, "full", datetime.now(UTC))
        return {"folder": str(self.folder), "pattern": EXPORT_PATTERN}

    def tick(self, now: datetime) -> None:
        if self.change_interval <= 0:
            return
        if self._next_export is None:
            self._next_export = now + timedelta(seconds=self.change_interval)
        elif now >= self._next_export:
            self._next_export = now + timedelta(seconds=self.change_interval)
            self.write_delta(now)

    def write_delta(self, now: datetime) -> Path:
        """Change one to three enrolments at `now` (Beijing time) and export them."""
        changed: list[Enrolment] = []
        for number in self._rng.sample(self.changeable, self._rng.randint(1, 3)):
            enrolment = self.current[number]
            if self._rng.random() < 0.5:
                status = "暂停缴费" if enrolment.status == "正常参保" else "正常参保"
                enrolment = replace(enrolment, status=status, changed_at=now)
            else:
                employer = self._rng.choice(self.employers)
                enrolment = replace(
                    enrolment,
                    employer=employer,
                    status="正常参保",
                    since=now.date(),
                    contribution_base_cny=self._rng.randint(40, 300) * 100,
                    changed_at=now,
                )
            self.current[number] = enrolment
            changed.append(enrolment)
        path = self._write([export_row(e) for e in changed], "delta", datetime.now(UTC))
        print(
            f"social-security: delta export {path.name} with {len(changed)} rows",
            file=sys.stderr,
            flush=True,
        )
        return path

    def _write(self, rows: Sequence[Mapping[str, str]], kind: str, moment: datetime) -> Path:
        name = f"enrolment-{moment:%Y%m%dT%H%M%SZ}-{self.exports_written:04d}-{kind}.csv"
        path = self.folder / name
        write_export(path, rows)
        self.exports_written += 1
        return path

    def stop(self) -> None:
        """Nothing to release: the exports stay in the folder."""


# --- the process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DepartmentOptions:
    """The command line of one department process."""

    name: str
    data_dir: Path
    seed: int = DEFAULT_SEED
    residents: int = DEFAULT_RESIDENTS
    companies: int = DEFAULT_COMPANIES
    port: int = 0
    change_interval: float | None = None
    token: str | None = None
    exit_with_parent: bool = False


def build_department(options: DepartmentOptions) -> SimulatedDepartment:
    """The department `options.name` over the world of `options.seed`, not yet started.

    Raises `ValueError` for an unknown name or sizes the world cannot have.
    """
    world = generate_world(options.seed, residents=options.residents, companies=options.companies)
    interval = options.change_interval
    if interval is None:
        interval = _DEFAULT_CHANGE_INTERVAL.get(options.name, 0.0)
    if options.name == "population":
        return PopulationRegistry(world, options.port)
    if options.name == "business":
        return BusinessRegistry(world, options.data_dir, interval)
    if options.name == "realestate":
        return RealEstateApi(world, options.token, options.port)
    if options.name == "social-security":
        return SocialSecurityExports(world, options.data_dir, interval)
    raise ValueError(f"unknown department {options.name!r} (known: {', '.join(DEPARTMENTS)})")


def _parse(argv: Sequence[str] | None) -> DepartmentOptions:
    parser = argparse.ArgumentParser(
        prog="python -m exchange.demo.departments",
        description="Run one simulated department system of the Tongban demo world.",
    )
    parser.add_argument("name", choices=DEPARTMENTS)
    parser.add_argument("--data-dir", type=Path, required=True, help="the department's files")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--residents", type=int, default=DEFAULT_RESIDENTS)
    parser.add_argument("--companies", type=int, default=DEFAULT_COMPANIES)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--change-interval",
        type=float,
        default=None,
        help="seconds between live changes (business: 5, social-security: 10; 0: none)",
    )
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies"
    )
    parsed = parser.parse_args(argv)
    return DepartmentOptions(
        name=parsed.name,
        data_dir=parsed.data_dir,
        seed=parsed.seed,
        residents=parsed.residents,
        companies=parsed.companies,
        port=parsed.port,
        change_interval=parsed.change_interval,
        token=os.environ.get(REALESTATE_TOKEN_ENV) or None,
        exit_with_parent=parsed.exit_with_parent,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one department until SIGTERM or SIGINT; return the exit status."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    options = _parse(argv)
    parent = os.getppid()
    try:
        department = build_department(options)
        ready = department.start()
    except (OSError, ValueError) as exc:
        print(f"{options.name}: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        ready = {"department": options.name, "pid": os.getpid(), **ready}
        print("READY " + json.dumps(ready, ensure_ascii=False), flush=True)
        while not stopping.wait(0.1):
            if options.exit_with_parent and os.getppid() != parent:
                print(f"{options.name}: parent process gone; stopping", file=sys.stderr)
                break
            department.tick(beijing_now())
    finally:
        department.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
