"""The `file` adapter on real export files in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AdapterSpec, ChangeBatch, ChangeKind
from adapters.factory import build_from_spec
from adapters.file_adapter import FileAdapter
from domain.errors import AdapterError, AdapterTimeout
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, parse_key

ENROLMENT = "social_security.enrolment"
PURPOSE = Purpose("BJ-2024-0002", "社保参保证明")
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")
ZHANG = parse_key(KeyKind.ID_CARD, "320106199003071234")
LIU = parse_key(KeyKind.ID_CARD, "440304198511204567")

MAPPING = {
    "record_type": ENROLMENT,
    "key_kind": "ID_CARD",
    "key_field": "证件号码",
    "id_field": "参保编号",
    "field_map": {"insurance": "险种", "status": "参保状态", "since": "参保日期"},
    "field_types": {"since": "date"},
    "deleted_field": "注销",
}
HEADER = "参保编号,证件号码,险种,参保状态,参保日期,注销\n"
FIRST_EXPORT = (
    HEADER
    + "S1,11010519491231002X,养老保险,正常参保,2001/07/01,\n"
    + "S2,３２０１０６１９９００３０７１２３４,医疗保险,正常参保,2012-03-01,\n"  # full-width key
    + "S3,110105194912310021,养老保险,正常参保,2001-07-01,\n"  # bad check character
    + "S4,440304198511204567,失业保险\n"  # too few fields
    + "S5,440304198511204567,失业保险,正常参保,2020-13-01,\n"  # no such month
    + ",440304198511204567,工伤保险,正常参保,2020-01-01,\n"  # no record id
)

Build = Callable[..., FileAdapter]


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


@pytest.fixture
async def build(exports: Path) -> AsyncIterator[Build]:
    built: list[FileAdapter] = []

    def make(*, timeout: float = 3.0, **options: Any) -> FileAdapter:
        spec = AdapterSpec(
            adapter_id="hrss.social-security",
            kind="file",
            department="人社局",
            serves={ENROLMENT: frozenset({KeyKind.ID_CARD})},
            options={"folder": str(exports), "mappings": [MAPPING], **options},
            timeout=timeout,
        )
        adapter = build_from_spec(spec)
        assert isinstance(adapter, FileAdapter)
        built.append(adapter)
        return adapter

    yield make
    for adapter in built:
        await adapter.close()


def write(path: Path, text: str, encoding: str = "utf-8", mtime: int | None = None) -> None:
    path.write_bytes(text.encode(encoding))
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


async def test_fetch_answers_from_the_csv_export(build: Build, exports: Path) -> None:
    write(exports / "enrolment-20240501.csv", FIRST_EXPORT)
    adapter = build()
    result = await adapter.fetch(WANG, [ENROLMENT], PURPOSE)
    [record] = result.records
    assert record.source_record_id == "S1"
    assert record.fields == {"insurance": "养老保险", "status": "正常参保", "since": "2001-07-01"}
    # The full-width key was normalized when the export was indexed.
    [zhang] = (await adapter.fetch(ZHANG, [ENROLMENT], PURPOSE)).records
    assert zhang.source_record_id == "S2"
    assert zhang.subject == ZHANG


async def test_malformed_rows_are_rejected_per_file_with_reasons(
    build: Build, exports: Path
) -> None:
    write(exports / "enrolment-20240501.csv", FIRST_EXPORT)
    adapter = build()
    result = await adapter.fetch(LIU, [ENROLMENT], PURPOSE)
    assert result.records == ()
    # Rows whose key is readable are reported with the subject's answer.
    assert [(r.source_record_id, r.reason) for r in result.rejected] == [
        ("S5", "field 'since' (from '参保日期'): '2020-13-01' is not a date"),
        ("enrolment-20240501.csv:6", "id field '参保编号' is missing or empty"),
    ]
    rejected = adapter.rejections["enrolment-20240501.csv"]
    assert [(r.source_record_id, r.reason.split(":")[0]) for r in rejected] == [
        ("S3", "key field '证件号码'"),
        ("enrolment-20240501.csv:4", "the row has 3 fields, the header 6"),
        ("S5", "field 'since' (from '参保日期')"),
        ("enrolment-20240501.csv:6", "id field '参保编号' is missing or empty"),
    ]


async def test_warm_up_indexes_the_folder_before_the_first_lookup(
    build: Build, exports: Path
) -> None:
    write(exports / "enrolment-20240501.csv", FIRST_EXPORT)
    adapter = build()

    adapter.warm_up()
    adapter.warm_up()  # the hub starts it once; a second call starts nothing more
    for _ in range(500):
        if adapter.rejections:
            break
        await asyncio.sleep(0.01)

    # Indexed before any fetch; the first lookup then uses that index.
    assert "enrolment-20240501.csv" in adapter.rejections
    assert adapter.index_builds == 1
    assert len((await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records) == 1
    assert adapter.index_builds == 1


async def test_warm_up_of_a_missing_folder_is_logged_and_the_fetch_reports_it(
    build: Build, exports: Path
) -> None:
    adapter = build(folder=str(exports / "absent"))

    adapter.warm_up()
    await asyncio.sleep(0.05)

    with pytest.raises(AdapterError, match="does not exist"):
        await adapter.fetch(WANG, [ENROLMENT], PURPOSE)


async def test_the_index_is_rebuilt_only_when_the_folder_changes(
    build: Build, exports: Path
) -> None:
    write(exports / "enrolment-20240501.csv", FIRST_EXPORT, mtime=1_700_000_000_000_000_000)
    write(exports / "notes.txt", "not an export")
    adapter = build()
    for _ in range(3):
        assert len((await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records) == 1
    assert adapter.index_builds == 1

    # The next night's export: a later name overrides S1 and adds a resident.
    write(
        exports / "enrolment-20240502.csv",
        HEADER
        + "S1,11010519491231002X,养老保险,暂停参保,2001-07-01,\n"
        + "S7,440304198511204567,医疗保险,正常参保,2015-09-01,\n",
    )
    [record] = (await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records
    assert record.fields["status"] == "暂停参保"
    assert [
        r.source_record_id for r in (await adapter.fetch(LIU, [ENROLMENT], PURPOSE)).records
    ] == ["S7"]
    assert adapter.index_builds == 2

    # A file rewritten in place (new size and time) is read again; a deletion removes S7.
    write(
        exports / "enrolment-20240502.csv",
        HEADER + "S7,440304198511204567,医疗保险,正常参保,2015-09-01,是\n",
    )
    assert (await adapter.fetch(LIU, [ENROLMENT], PURPOSE)).records == ()
    assert adapter.index_builds == 3
    assert (await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records[0].fields[
        "status"
    ] == "正常参保"
    assert adapter.index_builds == 3


async def test_a_rebuild_outlives_a_fetch_that_timed_out(build: Build, exports: Path) -> None:
    rows = "".join(
        f"S{i},11010519491231002X,养老保险,正常参保,2001-07-01,\n" for i in range(20_000)
    )
    write(exports / "enrolment-full.csv", HEADER + rows)
    adapter = build(timeout=0.02)
    with pytest.raises(AdapterTimeout):
        await adapter.fetch(WANG, [ENROLMENT], PURPOSE)
    # The retries after the timeout waited for the same build instead of starting anew.
    assert adapter.index_builds == 1
    index = await adapter.index()
    assert len(index.by_key[WANG]) == 20_000
    assert adapter.index_builds == 1


async def test_jsonl_exports_with_bad_lines(build: Build, exports: Path) -> None:
    lines = [
        json.dumps(
            {
                "参保编号": "J1",
                "证件号码": "11010519491231002x",
                "险种": "养老保险",
                "参保状态": "正常参保",
            }
        ),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"参保编号": 2, "证件号码": "440304198511204567", "参保日期": "2019-01-01"}),
    ]
    write(exports / "enrolment-1.jsonl", "\n".join(lines) + "\n")
    adapter = build(format="jsonl")
    [record] = (await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records
    assert record.source_record_id == "J1"
    [liu] = (await adapter.fetch(LIU, [ENROLMENT], PURPOSE)).records
    assert liu.source_record_id == "2"
    assert liu.fields == {"since": "2019-01-01"}
    assert [(r.source_record_id, r.reason) for r in adapter.rejections["enrolment-1.jsonl"]] == [
        ("enrolment-1.jsonl:3", "not JSON: Expecting property name enclosed in double quotes"),
        ("enrolment-1.jsonl:4", "not a JSON object"),
    ]


@pytest.mark.parametrize(
    ("encoding", "option"),
    [("utf-8-sig", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gb18030", "gb18030")],
)
async def test_byte_order_marks_and_gbk_exports(
    build: Build, exports: Path, encoding: str, option: str
) -> None:
    write(exports / "enrolment-1.csv", FIRST_EXPORT, encoding=encoding)
    if encoding == "utf-8-sig":
        assert (exports / "enrolment-1.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    adapter = build(encoding=option)
    [record] = (await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records
    assert record.source_record_id == "S1"


async def test_undecodable_rows_are_rejected_and_the_rest_kept(build: Build, exports: Path) -> None:
    (exports / "enrolment-1.csv").write_bytes(
        HEADER.encode()
        + "S1,11010519491231002X,养老保险,正常参保,2001-07-01,\n".encode()
        + "S9,440304198511204567,养老保险,正常参保,2001-07-01,\n".encode("gb18030")
        + "S2,320106199003071234,医疗保险,正常参保,2012-03-01,\n".encode()
    )
    adapter = build()
    assert [
        r.source_record_id for r in (await adapter.fetch(WANG, [ENROLMENT], PURPOSE)).records
    ] == ["S1"]
    assert [
        r.source_record_id for r in (await adapter.fetch(ZHANG, [ENROLMENT], PURPOSE)).records
    ] == ["S2"]
    assert [(r.source_record_id, r.reason) for r in adapter.rejections["enrolment-1.csv"]] == [
        ("enrolment-1.csv:2", "not utf-8 text")
    ]


async def collect(adapter: FileAdapter, cursor: str | None, size: int) -> list[ChangeBatch]:
    return [batch async for batch in adapter.changes(cursor, batch_size=size)]


async def test_changes_stream_file_by_file_and_resume_mid_file(build: Build, exports: Path) -> None:
    write(exports / "enrolment-20240501.csv", FIRST_EXPORT)
    write(
        exports / "enrolment-20240502.csv",
        HEADER
        + "S1,11010519491231002X,养老保险,暂停参保,2001-07-01,\n"
        + "S7,440304198511204567,医疗保险,正常参保,2015-09-01,Y\n",
    )
    adapter = build()
    batches = await collect(adapter, None, 4)
    assert [b.cursor for b in batches] == [
        "enrolment-20240501.csv:4",
        "enrolment-20240501.csv:6",
        "enrolment-20240502.csv:2",
    ]
    changes = [c for b in batches for c in b.changes]
    assert [(c.kind, c.source_record_id) for c in changes] == [
        (ChangeKind.UPSERT, "S1"),
        (ChangeKind.UPSERT, "S2"),
        (ChangeKind.REJECTED, "S3"),
        (ChangeKind.REJECTED, "enrolment-20240501.csv:4"),
        (ChangeKind.REJECTED, "S5"),
        (ChangeKind.REJECTED, "enrolment-20240501.csv:6"),
        (ChangeKind.UPSERT, "S1"),
        (ChangeKind.DELETE, "S7"),
    ]
    assert changes[3].reason == "the row has 3 fields, the header 6"
    # Each batch tells what is left from it on (counted from the files' lines at start).
    assert [b.total_estimate for b in batches] == [8, 4, 2]
    assert isinstance(changes[1].record, SourceRecord)
    assert changes[1].record.subject == ZHANG

    # Resume in the middle of the first file, then after the last row of everything.
    resumed = await collect(adapter, "enrolment-20240501.csv:2", 100)
    assert [c.source_record_id for b in resumed for c in b.changes] == [
        "S3", "enrolment-20240501.csv:4", "S5", "enrolment-20240501.csv:6", "S1", "S7",
    ]  # fmt: skip
    assert [b.total_estimate for b in resumed] == [6, 2]
    assert await collect(adapter, batches[-1].cursor, 100) == []

    # Rows appended to the last export after the cursor are streamed next time.
    with (exports / "enrolment-20240502.csv").open("a", encoding="utf-8") as handle:
        handle.write("S8,320106199003071234,生育保险,正常参保,2016-01-01,\n")
    [batch] = await collect(adapter, batches[-1].cursor, 100)
    assert [c.source_record_id for c in batch.changes] == ["S8"]
    assert batch.cursor == "enrolment-20240502.csv:3"


async def test_a_missing_folder_and_a_bad_cursor_are_clear_errors(
    build: Build, exports: Path
) -> None:
    adapter = build(folder=str(exports / "not-mounted"))
    with pytest.raises(AdapterError, match=r"export folder .*not-mounted does not exist") as caught:
        await adapter.fetch(WANG, [ENROLMENT], PURPOSE)
    assert not caught.value.retryable
    with pytest.raises(AdapterError, match=r"does not exist"):
        await collect(adapter, None, 10)
    with pytest.raises(AdapterError, match=r"is not <file name>:<row>"):
        await collect(build(), "enrolment.csv", 10)
