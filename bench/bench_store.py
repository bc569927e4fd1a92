"""Store scale: a Lookup served from the store and ListByHolder at 1,000,000 rows vs 10,000.

For each backend (SQLite always; PostgreSQL when ``TONGBAN_TEST_DATABASE_URL`` names a
server) and each size, a fresh store is filled with that many records of one adapter
(each under its own subject) and that many certificates (many holders), written raw in
bulk. Then, in the same run:

- a hub on that store answers Lookups over gRPC (one client, one call at a time) for
  one subject while its only source is down; the caller allows staleness, so every
  answer is that subject's record served from the store (STALE_SERVED);
- `CertificateLifecycle.list_by_holder` pages one holder's 10 certificates.

Rounds alternate between the two stores (both hubs up at once); each size's figure is
the median of its rounds' p50s. The ratio is large over small (target <= 1.5): a plan
that starts from the subject's key costs the same whatever the size of the store.
Set ``TONGBAN_BENCH_STORE_ROWS`` to change the large size (default 1,000,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import duration_pb2

from adapters.base import Adapter, AdapterSpec
from bench.bench_sync import PostgresSchemas, fresh_sqlite
from bench.harness import Ratio
from certstore.audit import AuditLog
from certstore.database import Database
from domain.errors import AdapterError
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, SubjectKey, parse_key
from exchange.audit import AuditTrail
from exchange.auth.policy import Caller
from exchange.certificates.library import CertificateLibrary
from exchange.certificates.lifecycle import IssueRequest
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.hub import Hub
from exchange.logs import configure_logging
from exchange.server import HubServer
from exchange.settings import RecordTypeSettings, load_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "tongban.example.toml"
SMALL = 10_000
LARGE = int(os.environ.get("TONGBAN_BENCH_STORE_ROWS", "1000000"))
ROUNDS = 7
CALLS_PER_ROUND = 60
RECORD_TYPE = "population.resident"
ADAPTER = "population-down"
SUBJECT = "11010519491231002X"
LICENCE = "11100000000013338W001"
HOLDER = "91350100M000100Y43"
HOLDER_CERTIFICATES = 10
ANONYMOUS = Caller(organization="", system="bench", anonymous_dev=True)
LOAD_BATCH = 50_000
FIELDS = {"name": "张三", "gender": "男", "birth_date": "1949-12-31"}
LOOKUP = exchange_pb2.LookupRequest(
    subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=SUBJECT),
    purpose=common_pb2.Purpose(case_id="BENCH-STORE", reason="benchmark"),
    max_staleness=duration_pb2.Duration(seconds=86_400),
)


class Down(Adapter):
    """A source that is down: every fetch fails."""

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord]:
        raise AdapterError(self.adapter_id, "source down (benchmark)")


def _spec() -> AdapterSpec:
    return AdapterSpec(
        adapter_id=ADAPTER,
        kind="python",
        department="population",
        serves={RECORD_TYPE: frozenset({KeyKind.ID_CARD})},
        max_concurrency=64,
    )


def _settings(folder: Path, url: str) -> Any:
    return load_settings(
        EXAMPLE,
        data_dir=str(folder),
        record_types={RECORD_TYPE: RecordTypeSettings(fields=dict.fromkeys(FIELDS, "string"))},
        **{"database.url": url, "http.listen": "", "logging.level": "ERROR"},
    )


# --- filling the store --------------------------------------------------------------------


def _numbers(database: Database) -> tuple[str, str, str]:
    """(WITH prefix, FROM clause, 17-digit zero-padded n) generating n = 1 .. :count."""
    if database.dialect_name == "sqlite":
        return (
            "WITH RECURSIVE numbers(n) AS "
            "(SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :count) ",
            "numbers",
            "printf('%017d', n)",
        )
    return ("", "generate_series(1, :count) AS numbers(n)", "lpad(n::text, 17, '0')")


def _fill_records(database: Database, count: int, fetched_at: datetime) -> None:
    """`count` records of the down adapter, each under its own subject; the benchmark's
    subject is one of them, in the middle of the id range. Rows are made inside the
    database (a recursive CTE on SQLite, generate_series on PostgreSQL)."""
    prefix, numbers, padded = _numbers(database)
    subject = f"CASE WHEN n = :middle THEN :subject ELSE 'F' || {padded} END"
    json_cast = "" if database.dialect_name == "sqlite" else "::jsonb"
    parameters = {
        "count": count,
        "middle": count // 2,
        "subject": SUBJECT,
        "adapter": ADAPTER,
        "record_type": RECORD_TYPE,
        "fields": json.dumps(FIELDS, ensure_ascii=False),
        "at": _timestamp(database, fetched_at),
    }
    with database.core_transaction() as connection:
        connection.execute(
            sa.text(
                f"{prefix}INSERT INTO records (id, adapter_id, department, record_type, "
                "source_record_id, subject_kind, subject_value, related_subjects, fields, "
                "content_hash, fetched_at) "
                f"SELECT n, :adapter, 'population', :record_type, 'R-' || n, 'ID_CARD', "
                f"{subject}, '[]'{json_cast}, CAST(:fields AS TEXT){json_cast}, "
                f"'sha256:' || {padded}, :at FROM {numbers}"
            ),
            parameters,
        )
        connection.execute(
            sa.text(
                f"{prefix}INSERT INTO record_keys (record_id, kind, value) "
                f"SELECT n, 'ID_CARD', {subject} FROM {numbers}"
            ),
            parameters,
        )
    _analyze(database)


def _timestamp(database: Database, value: datetime) -> Any:
    # SQLite holds naive UTC text, as UTCDateTime writes it.
    if database.dialect_name == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return value


def _fill_certificates(folder: Path, url: str, database: Database, count: int) -> Callable[[], int]:
    """`count` certificates: the holder's few, really issued, and the rest written raw
    for other holders (a copy of a real token: it is never read). Returns a reader of
    the holder's first page."""
    library = CertificateLibrary.open(
        _settings(folder, url), database, AuditTrail(AuditLog(database), b"bench-audit-key")
    )
    holder = parse_key(KeyKind.USCC, HOLDER)
    issued = library.lifecycle.issue_many(
        [
            IssueRequest(
                request_id=f"bench-{n}",
                type_code=LICENCE,
                holder=holder,
                fields={
                    "name": f"南京通办科技有限公司第{n}分公司",
                    "legal_representative": "张三",
                    "registered_capital_cny": 1_000_000,
                    "established": "2019-05-20",
                    "address": "江苏省南京市玄武区中山路1号",
                    "business_scope": "软件开发",
                },
            )
            for n in range(HOLDER_CERTIFICATES)
        ],
        ANONYMOUS,
    )
    # The rest: copies of a real row for other holders, made inside the database; only
    # the columns that must be unique (or spread the holder index) differ.
    with database.engine.connect() as connection:
        template = dict(
            connection.execute(
                sa.text("SELECT * FROM certificates WHERE id = :id"),
                {"id": issued[0].certificate.id},
            )
            .mappings()
            .one()
        )
    prefix, numbers, padded = _numbers(database)
    varying = {
        "id": f"'filler-' || {padded}",
        "serial": f"'F' || {padded}",
        "holder_value": f"'9132' || {padded}",
        "request_id": f"'filler-' || {padded}",
        "status_list_index": "10000000 + n",
        "predecessor_id": "NULL",
        "successor_id": "NULL",
    }
    columns = list(template)
    select = ", ".join(varying.get(name, f":{name}") for name in columns)
    values = {name: value for name, value in template.items() if name not in varying}
    with database.core_transaction() as connection:
        connection.execute(
            sa.text(
                f"{prefix}INSERT INTO certificates ({', '.join(columns)}) "
                f"SELECT {select} FROM {numbers}"
            ),
            {**values, "count": count},
        )
    _analyze(database)
    from certstore.certificates import HolderQuery

    query = HolderQuery("USCC", HOLDER, limit=20)
    return lambda: len(library.lifecycle.list_by_holder(query))


def _analyze(database: Database) -> None:
    if database.dialect_name == "postgresql":
        with database.core_transaction() as connection:
            connection.exec_driver_sql("ANALYZE")


# --- measuring ----------------------------------------------------------------------------


def _p50_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def _timed(call: Callable[[], object], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


class _Store:
    """One filled store: its hub (source down) and a ListByHolder reader."""

    def __init__(self, folder: Path, url: str, count: int) -> None:
        self.count, self.folder, self.url = count, folder, url
        self.database = Database.from_url(url)
        started = time.perf_counter()
        _fill_records(self.database, count, datetime.now(UTC) - timedelta(minutes=5))
        self.list_page = _fill_certificates(folder, url, self.database, count)
        print(
            f"  {count:>9,} records + {count:,} certificates filled in "
            f"{time.perf_counter() - started:.0f} s"
        )
        assert self.list_page() == HOLDER_CERTIFICATES
        self.server: HubServer | None = None
        self.stub: exchange_pb2_grpc.ExchangeServiceStub | None = None
        self.channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        hub = Hub.open(_settings(self.folder, self.url), [Down(_spec())])
        self.server = HubServer(hub, "127.0.0.1:0")
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = exchange_pb2_grpc.ExchangeServiceStub(self.channel)
        answer = await self.stub.Lookup(LOOKUP, timeout=10)
        assert len(answer.records) == 1, "the stored record must be served"

    async def lookups(self, calls: int) -> list[float]:
        assert self.stub is not None
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            await self.stub.Lookup(LOOKUP, timeout=10)
            times.append(time.perf_counter() - started)
        return times

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop(grace=1)
        self.database.dispose()


async def _compare(backend: str, small: _Store, large: _Store) -> list[Ratio]:
    """Alternate rounds on both stores; each figure is the median of its rounds' p50s,
    so a neighbour's burst hits one round of both sizes, not all of one."""
    for store in (small, large):
        await store.start()
    try:
        for store in (small, large):  # warm-up
            await store.lookups(20)
            _timed(store.list_page, 20)
        figures: dict[int, tuple[list[float], list[float]]] = {
            small.count: ([], []),
            large.count: ([], []),
        }
        for _ in range(ROUNDS):
            for store in (small, large):
                lookups, pages = figures[store.count]
                lookups.append(_p50_ms(await store.lookups(CALLS_PER_ROUND)))
                pages.append(_p50_ms(_timed(store.list_page, CALLS_PER_ROUND)))
    finally:
        for store in (small, large):
            await store.stop()
    (small_lookup, small_page), (large_lookup, large_page) = (
        (statistics.median(figures[size][0]), statistics.median(figures[size][1]))
        for size in (small.count, large.count)
    )
    for size, lookup, page in (
        (small.count, small_lookup, small_page),
        (large.count, large_lookup, large_page),
    ):
        print(
            f"  {size:>9,} rows: Lookup from the store p50 {lookup:.2f} ms, "
            f"ListByHolder p50 {page:.2f} ms (median of {ROUNDS} rounds)"
        )
    return [
        Ratio(
            f"store: {backend} Lookup served from the store (source down), p50 at "
            f"{LARGE:,} rows vs {SMALL:,}",
            large_lookup,
            small_lookup,
            1.5,
            "ms",
            higher_is_better=False,
        ),
        Ratio(
            f"store: {backend} ListByHolder p50 at {LARGE:,} certificates vs {SMALL:,}",
            large_page,
            small_page,
            1.5,
            "ms",
            higher_is_better=False,
        ),
    ]


def main() -> list[Ratio]:
    configure_logging("ERROR")
    ratios: list[Ratio] = []
    print("client: one grpc.aio caller in this process, one call at a time (Lookup)")
    with tempfile.TemporaryDirectory(prefix="tongban-bench-store-") as temporary:
        folder = Path(temporary)
        print("SQLite:")
        small, large = (
            _Store(folder / f"hub-{count}", fresh_sqlite(folder, f"store-{count}.db"), count)
            for count in (SMALL, LARGE)
        )
        ratios.extend(asyncio.run(_compare("SQLite", small, large)))
        pg_url = os.environ.get("TONGBAN_TEST_DATABASE_URL")
        if pg_url:
            print("PostgreSQL:")
            schemas = PostgresSchemas(pg_url)
            try:
                small, large = (
                    _Store(folder / f"pg-{count}", schemas.fresh(), count)
                    for count in (SMALL, LARGE)
                )
                ratios.extend(asyncio.run(_compare("PostgreSQL", small, large)))
            finally:
                schemas.drop()
        else:
            print("PostgreSQL: skipped (set TONGBAN_TEST_DATABASE_URL)")
    return ratios


if __name__ == "__main__":
    from bench.harness import report

    raise SystemExit(report(main()))
