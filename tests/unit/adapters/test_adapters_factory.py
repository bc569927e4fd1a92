"""Building adapters: eager options validation, errors naming the setting or request field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from adapters.base import AdapterSpec
from adapters.factory import KINDS, build_adapter, build_from_spec
from adapters.file_adapter import FileAdapter
from adapters.grpc_adapter import GrpcAdapter
from adapters.http_adapter import HttpAdapter
from adapters.sql_adapter import SqlAdapter, decode_cursor, encode_cursor
from domain.errors import ConfigError, InvalidRequest
from domain.subjects import KeyKind
from exchange.settings import AdapterSettings

RESIDENT = "population.resident"
MAPPING = {
    "record_type": RESIDENT,
    "key_kind": "ID_CARD",
    "key_field": "sfzh",
    "id_field": "id",
    "field_map": {"name": "xm"},
}
GOOD_OPTIONS: dict[str, dict[str, Any]] = {
    "grpc": {"target": "127.0.0.1:50061"},
    "sql": {"url": "sqlite:///dept.db", "table": "residents", "mappings": [MAPPING]},
    "http": {
        "base_url": "https://dept.example/api",
        "fetch": {"path": "/residents/{key}"},
        "mappings": [MAPPING],
    },
    "file": {"folder": "exports", "mappings": [MAPPING]},
}
TYPES = {"grpc": GrpcAdapter, "sql": SqlAdapter, "http": HttpAdapter, "file": FileAdapter}


def spec(kind: str, options: Mapping[str, Any], **serves: list[KeyKind]) -> AdapterSpec:
    return AdapterSpec(
        adapter_id="dept.test",
        kind=kind,
        department="测试部门",
        serves={k: frozenset(v) for k, v in (serves or {RESIDENT: [KeyKind.ID_CARD]}).items()},
        options=options,
    )


def settings(kind: str, options: Mapping[str, Any]) -> AdapterSettings:
    return AdapterSettings(
        id="dept.test",
        kind=kind,  # type: ignore[arg-type]
        department="测试部门",
        serves=[{"record_type": RESIDENT, "key_kinds": ["ID_CARD"]}],  # type: ignore[list-item]
        options=dict(options),
    )


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_every_kind_builds_without_connecting(kind: str) -> None:
    adapter = build_adapter(settings(kind, GOOD_OPTIONS[kind]), "adapters[0]")
    assert type(adapter) is TYPES[kind]
    assert adapter.adapter_id == "dept.test"
    await adapter.close()


# (kind, options change, field under "options", rule prefix)
BAD_OPTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("grpc", {"target": "no-port"}, "target", "must be HOST:PORT"),
    ("grpc", {"target": "host:70000"}, "target", "must be HOST:PORT"),
    ("grpc", {"tls": {"cert_file": "hub.crt"}}, "tls.ca_file", "required"),
    (
        "grpc",
        {"tls": {"ca_file": "ca.pem", "cert_file": "hub.crt"}},
        "tls",
        "cert_file and key_file go together",
    ),
    ("grpc", {"deadline": 3}, "deadline", "unknown option"),
    ("grpc", {"targt": "127.0.0.1:1"}, "targt", "unknown option; did you mean 'target'?"),
    (
        "http",
        {**GOOD_OPTIONS["http"], "fetch": {"pth": "/r/{key}"}},
        "fetch.pth",
        "unknown option; did you mean 'path'?",
    ),
    ("sql", {"url": "mysql://x@y/z"}, "url", "must start with sqlite:///, postgresql+psycopg://"),
    ("sql", {"url": "oracle+oracledb://x@y/z"}, "url", "must start with sqlite:///"),
    ("sql", {"url": "sqlite://"}, "url", "a SQLite source must be a database file"),
    ("sql", {"url": "::"}, "url", "not a database URL"),
    ("sql", {"query": "SELECT * FROM t WHERE a = :key"}, "", "set exactly one of table and query"),
    ("sql", {"table": None}, "", "set exactly one of table and query"),
    ("sql", {"table": None, "query": "SELECT * FROM t"}, "query", "must select the subject's rows"),
    ("sql", {"table": None, "query": "DELETE FROM t WHERE a = :key"}, "query", "must be a SELECT"),
    (
        "sql",
        {"table": None, "query": "SELECT * FROM t WHERE a = :key AND b = :b"},
        "query",
        "unknown parameter :b",
    ),
    (
        "sql",
        {
            "table": None,
            "query": "SELECT 1 WHERE :key = 'x'",
            "changes": {"cursor_columns": ["id"]},
        },
        "",
        "changes need a table",
    ),
    (
        "sql",
        {"changes": {"cursor_columns": []}},
        "changes.cursor_columns",
        "List should have at least 1 item",
    ),
    ("sql", {"max_rows": 0}, "max_rows", "Input should be greater than or equal to 1"),
    ("sql", {"mappings": []}, "mappings", "List should have at least 1 item"),
    (
        "sql",
        {"mappings": [{**MAPPING, "record_type": "tax.payer"}]},
        "mappings[0].record_type",
        "'tax.payer' is not among",
    ),
    (
        "sql",
        {"mappings": [{**MAPPING, "key_kind": "USCC"}]},
        "mappings",
        "the adapter serves population.resident by ID_CARD but no mapping",
    ),
    ("sql", {"mappings": [{**MAPPING, "key_fild": "x"}]}, "mappings[0].key_fild", "unknown option"),
    ("http", {"base_url": "ftp://dept.example"}, "base_url", "must be an http:// or https:// URL"),
    ("http", {"base_url": "https://"}, "base_url", "must name a host"),
    ("http", {"base_url": "https://dept.example/?a=1"}, "base_url", "must have no query"),
    ("http", {"fetch": {"path": "residents/{key}"}}, "fetch.path", "must start with /"),
    ("http", {"fetch": {"path": "/residents/{id}"}}, "fetch.path", "unknown placeholder {id}"),
    (
        "http",
        {"fetch": {"path": "/residents"}},
        "fetch",
        "the path, a parameter or the body must hold {key}",
    ),
    ("http", {"fetch": {"path": "/r", "params": {"id": "{key"}}}, "fetch.params", "not a template"),
    (
        "http",
        {"fetch": {"path": "/r", "body": {"id": "{key}"}}},
        "fetch",
        "a body needs method POST",
    ),
    ("http", {"auth_header": "Authorization"}, "", "set auth_header and auth_token together"),
    (
        "http",
        {"headers": {"authorization": "x"}, "auth_header": "Authorization", "auth_token": "y"},
        "",
        "header 'Authorization' is set in both",
    ),
    (
        "http",
        {"changes": {"path": "/changes/{key}"}},
        "changes.path",
        "the changes path takes no placeholders",
    ),
    ("file", {"format": "xlsx"}, "format", "Input should be 'csv' or 'jsonl'"),
    ("file", {"encoding": "utf-9"}, "encoding", "unknown encoding 'utf-9'"),
    ("file", {"encoding": "utf-16"}, "encoding", "must be ASCII-compatible"),
    ("file", {"pattern": "sub/*.csv"}, "pattern", "must be a file-name pattern"),
    ("file", {"format": "jsonl", "delimiter": ";"}, "", "delimiter applies to csv only"),
    ("file", {"folder": ""}, "folder", "String should have at least 1 character"),
]


def _bad(kind: str, change: dict[str, Any]) -> dict[str, Any]:
    return {name: v for name, v in {**GOOD_OPTIONS[kind], **change}.items() if v is not None}


@pytest.mark.parametrize(("kind", "change", "field", "rule"), BAD_OPTIONS)
def test_bad_options_fail_the_build_naming_the_setting(
    kind: str, change: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_adapter(settings(kind, _bad(kind, change)), "adapters[2]")
    expected = "adapters[2].options" + (f".{field}" if field and field[0] != "[" else field)
    assert caught.value.setting == expected
    assert caught.value.rule.startswith(rule), caught.value.rule


@pytest.mark.parametrize(("kind", "change", "field", "rule"), BAD_OPTIONS)
def test_bad_registrations_are_invalid_requests_naming_the_field(
    kind: str, change: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_from_spec(spec(kind, _bad(kind, change)))
    assert caught.value.field == "spec.settings" + (f".{field}" if field else "")
    assert caught.value.rule.startswith(rule), caught.value.rule


async def test_build_from_spec_builds_every_kind() -> None:
    for kind in KINDS:
        adapter = build_from_spec(spec(kind, GOOD_OPTIONS[kind]))
        assert type(adapter) is TYPES[kind]
        await adapter.close()


def test_unknown_kinds_are_named() -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_from_spec(spec("ftp", {}))
    assert caught.value.field == "spec.kind"
    assert "grpc, http, python, sql" in caught.value.rule


def test_python_plugins_are_loaded_by_entry_point() -> None:
    adapter = build_from_spec(spec("python", {"entry_point": "demo-population"}))
    assert type(adapter).__name__ == "PopulationRegistry"
    with pytest.raises(InvalidRequest) as caught:
        build_from_spec(spec("python", {"entry_point": "no-such-plugin"}))
    assert caught.value.field == "spec.settings.entry_point"
    assert caught.value.rule.startswith("no plug-in 'no-such-plugin'")
    with pytest.raises(ConfigError) as config_error:
        build_adapter(settings("python", {}), "adapters[4]")
    assert config_error.value.setting == "adapters[4].options.entry_point"


def test_a_served_org_code_needs_a_mapping_that_has_one() -> None:
    options = {**GOOD_OPTIONS["sql"], "mappings": [{**MAPPING, "key_kind": "USCC"}]}
    serves = {"market.license": [KeyKind.USCC, KeyKind.ORG_CODE]}
    mapping = {**MAPPING, "record_type": "market.license", "key_kind": "USCC"}
    with pytest.raises(InvalidRequest, match=r"by ORG_CODE but no mapping"):
        build_from_spec(spec("sql", {**options, "mappings": [mapping]}, **serves))
    related = {**mapping, "related_key_fields": {"ORG_CODE": "zzjgdm"}}
    assert build_from_spec(spec("sql", {**options, "mappings": [related]}, **serves))


def test_sql_cursors_round_trip_their_types() -> None:
    from datetime import date, datetime
    from decimal import Decimal

    values = (datetime(2024, 5, 1, 8, 0, 0, 123), 42, "R-1", Decimal("1.50"), date(2024, 5, 1))
    cursor = encode_cursor(values)
    assert decode_cursor(cursor, 5) == values
    assert all(type(a) is type(b) for a, b in zip(decode_cursor(cursor, 5), values, strict=True))
    for foreign in ("x", "[1]", '[["datetime","x"]]', '[["blob","x"]]'):
        with pytest.raises(InvalidRequest, match=r"not a cursor of this sql adapter"):
            decode_cursor(foreign, 1)
    with pytest.raises(ValueError, match=r"a cursor column holds a NoneType"):
        encode_cursor([None])


def test_the_circuit_breaker_is_configured_per_adapter() -> None:
    declared = settings("grpc", GOOD_OPTIONS["grpc"]).model_copy(
        update={"circuit_failure_threshold": 2, "circuit_cooldown_seconds": 1.5}
    )
    adapter = build_adapter(declared, "adapters[0]")
    assert (adapter.breaker.failure_threshold, adapter.breaker.cooldown) == (2, 1.5)
    default = build_adapter(settings("grpc", GOOD_OPTIONS["grpc"]), "adapters[0]")
    assert (default.breaker.failure_threshold, default.breaker.cooldown) == (5, 30.0)
