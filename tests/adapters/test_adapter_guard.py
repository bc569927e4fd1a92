"""A connect guard (what the hub gives run-time registered adapters): the grpc and http
adapters dial the address the guard checked, never a second resolution of the name,
and a concealing adapter tells its caller only a generic reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from adapters.base import CONCEALED, AdapterSpec
from adapters.factory import build_from_spec
from adapters.resilience import RetryPolicy
from domain.errors import AdapterError
from domain.records import Purpose
from domain.subjects import KeyKind, parse_key
from exchange.generated import adapters_pb2_grpc

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "adapters"
RESIDENT = "population.resident"
PURPOSE = Purpose("BJ-2024-0005", "户籍核验")
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")
# A name no resolver knows: the adapters reach the department only through the guard.
NOWHERE = "department.invalid"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tongban_guard_{name}", ASSETS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grpc_department = _load("grpc_department")
http_department = _load("http_department")


class Guard:
    """Permits by a table of host → address; records every question."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def permit(self, host: str, port: int) -> str:
        self.asked.append((host, port))
        if host not in self.answers:
            raise AdapterError("egress", "the hub's egress rules refuse this target")
        return self.answers[host]


def spec(kind: str, options: dict[str, Any], guard: Guard) -> AdapterSpec:
    return AdapterSpec(
        adapter_id="county.population",
        kind=kind,
        department="县公安局",
        serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
        options=options,
        timeout=2.0,
        retry=RetryPolicy(attempts=1),
        guard=guard,
        conceal_errors=True,
    )


@pytest.fixture
async def grpc_port():
    server = grpc.aio.server()
    adapters_pb2_grpc.add_DepartmentAdapterServicer_to_server(
        grpc_department.Department(0.0), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(grace=0)


async def test_the_grpc_adapter_dials_the_checked_address_once(grpc_port):
    guard = Guard({NOWHERE: "127.0.0.1"})
    adapter = build_from_spec(spec("grpc", {"target": f"{NOWHERE}:{grpc_port}"}, guard))
    try:
        for _ in range(2):
            result = await adapter.fetch(WANG, [RESIDENT], PURPOSE)
            assert result.records
    finally:
        await adapter.close()
    assert guard.asked == [(NOWHERE, grpc_port)]  # pinned: checked once, then kept


async def test_a_refused_grpc_target_is_a_generic_error(grpc_port):
    guard = Guard({})
    adapter = build_from_spec(spec("grpc", {"target": f"127.0.0.1:{grpc_port}"}, guard))
    try:
        with pytest.raises(AdapterError) as raised:
            await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    finally:
        await adapter.close()
    assert raised.value.message == f"adapter county.population: {CONCEALED}"
    assert adapter.health.last_error == raised.value.message


def http_options(base_url: str) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "fetch": {"path": "/api/v1/residents/{key}", "params": {"kind": "{key_kind}"}},
        "records_path": "data.items",
        "auth_header": "X-Api-Token",
        "auth_token": http_department.TOKEN,
        "mappings": [
            {
                "record_type": RESIDENT,
                "key_kind": "ID_CARD",
                "key_field": "idNo",
                "id_field": "recordNo",
                "field_map": {"name": "xm"},
            }
        ],
    }


async def test_the_http_adapter_connects_where_the_guard_says_at_every_connection():
    department = http_department.HttpDepartment().start()
    port = int(department.base_url.rsplit(":", 1)[1])
    guard = Guard({NOWHERE: "127.0.0.1"})
    adapter = build_from_spec(spec("http", http_options(f"http://{NOWHERE}:{port}"), guard))
    try:
        result = await adapter.fetch(WANG, [RESIDENT], PURPOSE)
        assert result.records
        assert guard.asked[0] == (NOWHERE, port)
        # The name now "resolves" somewhere forbidden: the next connection is refused.
        guard.answers.clear()
        await adapter.close()
        with pytest.raises(AdapterError) as raised:
            await adapter.fetch(WANG, [RESIDENT], PURPOSE)
        assert raised.value.message == f"adapter county.population: {CONCEALED}"
        assert guard.asked == [(NOWHERE, port), (NOWHERE, port)]
        assert str(port) not in adapter.health.last_error
    finally:
        await adapter.close()
        department.stop()
