"""Certificate types from configuration: declared fields, JSON types, and settings rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain.errors import ConfigError, InvalidRequest
from exchange.certificates.types import CertificateTypes, plain_json
from exchange.settings import CertificateTypeSettings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "tongban.example.toml"
LICENCE = "11100000000013338W001"
AMR = "11320100MB1111116K"

DECLARED = CertificateTypeSettings(
    name="测试证照",
    holder_kind="USCC",  # type: ignore[arg-type]
    issuer_uscc=AMR,
    issuer_department="南京市市场监督管理局",
    fields={
        "name": "string",
        "capital": "integer",
        "ratio": "number",
        "listed": "boolean",
        "established": "date",
        "registered_at": "datetime",
        "address": "object",
        "scopes": "array",
    },
    optional_fields={"note": "string"},
)
GOOD: dict[str, Any] = {
    "name": "南京通办科技有限公司",
    "capital": 1_000_000,
    "ratio": 0.25,
    "listed": False,
    "established": "2019-05-20",
    "registered_at": "2019-05-20T09:30:00+08:00",
    "address": {"city": "南京", "street": "中山路1号"},
    "scopes": ["软件开发", "数据处理"],
}


def kind() -> Any:
    return CertificateTypes({"T1": DECLARED}).get("T1")


# field -> (bad value, what the rule says)
MISTYPED = [
    ("name", 42, "must be a string"),
    ("name", "   ", "must not be empty"),
    ("capital", "一百万", "must be an integer"),
    ("capital", 1.5, "must be an integer"),
    ("capital", True, "must be an integer"),
    ("ratio", "0.25", "must be a number"),
    ("listed", "yes", "must be true or false"),
    ("established", "2019/05/20", "must be a date"),
    ("established", "2019-02-30", "not a real date"),
    ("registered_at", "2019-05-20T09:30:00", "with an offset"),
    ("registered_at", "2019-05-20", "with an offset"),
    ("address", "南京", "must be an object"),
    ("scopes", "软件开发", "must be an array"),
]


@pytest.mark.parametrize(
    ("name", "value", "rule"), MISTYPED, ids=[f"{n}={v!r}" for n, v, _ in MISTYPED]
)
def test_a_mistyped_field_is_named(name: str, value: object, rule: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        kind().check_fields({**GOOD, name: value})
    assert raised.value.field == f"fields.{name}"
    assert rule in raised.value.rule


@pytest.mark.parametrize("name", list(GOOD))
def test_every_required_field_must_be_there(name: str) -> None:
    fields = {k: v for k, v in GOOD.items() if k != name}
    with pytest.raises(InvalidRequest) as raised:
        kind().check_fields(fields)
    assert raised.value.field == f"fields.{name}"
    assert "required by 测试证照 (T1)" in raised.value.rule


def test_an_undeclared_field_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequest) as raised:
        kind().check_fields({**GOOD, "nickname": "x"})
    assert raised.value.field == "fields.nickname"


def test_struct_doubles_become_integers_and_nulls_are_absent() -> None:
    # protobuf Struct carries every number as a double.
    checked = kind().check_fields(
        {**GOOD, "capital": 1_000_000.0, "note": None, "address": {"floor": 3.0}}
    )
    assert checked["capital"] == 1_000_000
    assert type(checked["capital"]) is int
    assert checked["address"] == {"floor": 3}
    assert "note" not in checked
    assert plain_json([1.0, 2.5, {"x": -0.0}]) == [1, 2.5, {"x": 0}]


def test_unknown_type_codes_are_invalid_arguments() -> None:
    types = CertificateTypes({"T1": DECLARED})
    with pytest.raises(InvalidRequest) as raised:
        types.get("T2")
    assert raised.value.field == "type_code"
    assert types.issuers() == {AMR: "南京市市场监督管理局"}


SETTINGS_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    (
        "lower-case type code",
        {"certificate_types": {"abc": DECLARED.model_dump()}},
        "certificate type code",
    ),
    (
        "issuer that is not a USCC",
        {"certificate_types": {"T1": {**DECLARED.model_dump(), "issuer_uscc": "123"}}},
        "certificate_types",
    ),
    (
        "one issuer, two names",
        {
            "certificate_types": {
                "T1": DECLARED.model_dump(),
                "T2": {**DECLARED.model_dump(), "issuer_department": "另一个名字"},
            }
        },
        "one issuer signs with one key",
    ),
    (
        "a field both required and optional",
        {
            "certificate_types": {
                "T1": {**DECLARED.model_dump(), "optional_fields": {"name": "string"}}
            }
        },
        "both required and optional",
    ),
    (
        "both passphrase sources",
        {"signing": {"passphrase_env": "X", "passphrase_file": "/tmp/x"}},
        "not both",
    ),
    ("a public URL with a query", {"signing": {"public_url": "https://x.cn/?a=1"}}, "http(s) URL"),
    (
        "refresh after expiry",
        {"signing": {"status_refresh_minutes": 120, "status_lifetime_hours": 1}},
        "must not exceed",
    ),
]


@pytest.mark.parametrize(
    ("name", "overrides", "message"), SETTINGS_ERRORS, ids=[c[0] for c in SETTINGS_ERRORS]
)
def test_bad_certificate_settings_stop_the_start(
    name: str, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(EXAMPLE, **overrides)
    assert message in raised.value.message


def test_the_example_configuration_declares_the_business_licence() -> None:
    settings = load_settings(EXAMPLE)
    licence = CertificateTypes(settings.certificate_types).get(LICENCE)
    assert licence.name == "营业执照"
    assert licence.issuer_uscc == AMR
    assert settings.signing_algorithm == "EdDSA"
    assert settings.signing.passphrase_from_env is None
