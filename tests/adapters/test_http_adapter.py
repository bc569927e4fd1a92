"""The `http` adapter against a real HTTP server on a loopback port."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from adapters.base import AdapterSpec, ChangeBatch, ChangeKind
from adapters.factory import build_from_spec
from adapters.http_adapter import HttpAdapter
from adapters.resilience import RetryPolicy
from domain.errors import AdapterError, AdapterTimeout
from domain.records import Purpose
from domain.subjects import KeyKind, parse_key

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "adapters"
RESIDENT = "population.resident"
PURPOSE = Purpose("BJ-2024-0003", "居住证办理")
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")
UNKNOWN = parse_key(KeyKind.ID_CARD, "510107199901013337")

MAPPING = {
    "record_type": RESIDENT,
    "key_kind": "ID_CARD",
    "key_field": "idNo",
    "id_field": "recordNo",
    "field_map": {"name": "xm", "birth_date": "csrq", "city": "hjdz.city"},
    "updated_at_field": "updated",
    "deleted_field": "deleted",
}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tongban_test_{name}", ASSETS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


department_module = _load("http_department")


@pytest.fixture
def department() -> Iterator[Any]:
    server = department_module.HttpDepartment(flaky_failures=1, slow_seconds=0.5).start()
    yield server
    server.stop()


Build = Callable[..., HttpAdapter]


@pytest.fixture
async def build(department: Any) -> AsyncIterator[Build]:
    built: list[HttpAdapter] = []

    def make(*, timeout: float = 2.0, attempts: int = 3, **options: Any) -> HttpAdapter:
        options = {
            "base_url": department.base_url,
            "fetch": {"path": "/api/v1/residents/{key}", "params": {"kind": "{key_kind}"}},
            "records_path": "data.items",
            "auth_header": "X-Api-Token",
            "auth_token": department_module.TOKEN,
            "mappings": [MAPPING],
            **options,
        }
        spec = AdapterSpec(
            adapter_id="psb.population-api",
            kind="http",
            department="市公安局",
            serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
            options=options,
            timeout=timeout,
            retry=RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.05),
        )
        adapter = build_from_spec(spec)
        assert isinstance(adapter, HttpAdapter)
        built.append(adapter)
        return adapter

    yield make
    for adapter in built:
        await adapter.close()


async def test_fetch_maps_records_and_rejects_malformed_ones(build: Build) -> None:
    result = await build().fetch(WANG, [RESIDENT], PURPOSE)
    assert [r.source_record_id for r in result.records] == ["R1", "R1b"]
    first, full_width = result.records
    assert first.fields == {"name": "王伟", "birth_date": "1949-12-31", "city": "北京市"}
    assert first.updated_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    # Filed full-width with a lower-case check letter: normalized, and it is the subject's.
    assert full_width.subject == WANG
    assert [(r.source_record_id, r.reason.split(":")[0]) for r in result.rejected] == [
        ("R2", "key field 'idNo'"),
        ("item 3", "id field 'recordNo' is missing or empty"),
        ("item 4", "not a JSON object but a string"),
    ]


async def test_a_post_template_sends_the_key_in_the_body(build: Build, department: Any) -> None:
    adapter = build(
        fetch={"method": "POST", "path": "/api/v1/query", "body": {"idNo": "{key}", "page": 1}}
    )
    result = await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    assert len(result.records) == 2
    assert department.bodies == [{"idNo": WANG.value, "page": 1}]


async def test_404_is_an_empty_answer(build: Build) -> None:
    result = await build().fetch(UNKNOWN, [RESIDENT], PURPOSE)
    assert result.records == ()
    assert result.rejected == ()


async def test_a_wrong_token_is_not_retried(build: Build, department: Any) -> None:
    with pytest.raises(AdapterError) as caught:
        await build(auth_token="wrong").fetch(WANG, [RESIDENT], PURPOSE)
    assert caught.value.message.endswith("HTTP 401 from GET /api/v1/residents/{key}")
    assert not caught.value.retryable
    assert department.hits["api/v1"] == 1


async def test_503_is_retried_until_an_answer_comes(build: Build, department: Any) -> None:
    adapter = build(fetch={"path": "/flaky/residents/{key}"})
    result = await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    assert len(result.records) == 2
    assert department.hits["flaky/residents"] == 2


async def test_500_is_not_retried(build: Build, department: Any) -> None:
    with pytest.raises(AdapterError) as caught:
        await build(fetch={"path": "/broken/residents/{key}"}).fetch(WANG, [RESIDENT], PURPOSE)
    assert caught.value.message.endswith("HTTP 500 from GET /broken/residents/{key}")
    assert not caught.value.retryable
    assert department.hits["broken/residents"] == 1


async def test_redirects_are_not_followed(build: Build) -> None:
    with pytest.raises(AdapterError) as caught:
        await build(fetch={"path": "/moved/residents/{key}"}).fetch(WANG, [RESIDENT], PURPOSE)
    assert caught.value.message.endswith("HTTP 302 from GET /moved/residents/{key}")
    assert not caught.value.retryable


async def test_a_body_that_is_not_json_is_an_error(build: Build) -> None:
    with pytest.raises(
        AdapterError, match=r"answered text/html; charset=utf-8, not JSON"
    ) as caught:
        await build(fetch={"path": "/html/residents/{key}"}).fetch(WANG, [RESIDENT], PURPOSE)
    assert not caught.value.retryable


async def test_an_answer_without_the_records_path_is_an_error(build: Build) -> None:
    with pytest.raises(AdapterError, match=r"has no 'data\.records'"):
        await build(records_path="data.records").fetch(WANG, [RESIDENT], PURPOSE)


async def test_a_slow_department_times_out_retryably(build: Build, department: Any) -> None:
    adapter = build(fetch={"path": "/slow/residents/{key}"}, timeout=0.2, attempts=2)
    with pytest.raises(AdapterTimeout) as caught:
        # A deadline well past both attempts: on a busy machine the default budget
        # (timeout x attempts) can run out before the second attempt starts.
        await adapter.fetch(WANG, [RESIDENT], PURPOSE, deadline=10.0)
    assert caught.value.retryable
    assert department.hits["slow/residents"] == 2


async def test_a_refused_connection_is_retryable(build: Build) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AdapterError) as caught:
        await build(base_url=f"http://127.0.0.1:{port}", attempts=2).fetch(
            WANG, [RESIDENT], PURPOSE
        )
    assert caught.value.retryable
    assert "ConnectError" in caught.value.message


async def collect(adapter: HttpAdapter, cursor: str | None, size: int) -> list[ChangeBatch]:
    return [batch async for batch in adapter.changes(cursor, batch_size=size)]


async def test_changes_follow_the_next_cursor_and_resume(build: Build) -> None:
    adapter = build(
        changes={"path": "/api/v1/changes", "next_cursor_path": "next", "has_more_path": "more"}
    )
    batches = await collect(adapter, None, 2)
    assert [b.cursor for b in batches] == ["c2", "c4", "c5"]
    changes = [c for b in batches for c in b.changes]
    assert [(c.kind, c.source_record_id) for c in changes] == [
        (ChangeKind.UPSERT, "R1"),
        (ChangeKind.UPSERT, "R3"),
        (ChangeKind.REJECTED, "R4"),
        (ChangeKind.DELETE, "R5"),
        (ChangeKind.UPSERT, "R6"),
    ]
    assert changes[2].reason.startswith("key field 'idNo': ID_CARD: ")
    resumed = await collect(adapter, "c2", 2)
    assert [c.source_record_id for b in resumed for c in b.changes] == ["R4", "R5", "R6"]
    assert await collect(adapter, "c5", 2) == []


async def test_changes_need_configuration(build: Build) -> None:
    with pytest.raises(AdapterError, match=r"options\.changes is not configured"):
        await collect(build(), None, 2)
