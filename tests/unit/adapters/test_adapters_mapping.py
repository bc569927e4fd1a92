"""RecordMapping: rows to records or rejections, value conversion, options errors."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.base import ChangeKind, Rejection
from adapters.mapping import RecordMapping, jsonable, options_error, parse_options
from domain.errors import InvalidRequest
from domain.records import SourceRecord
from domain.subjects import KeyKind, parse_key

ID = "11010519491231002X"
USCC = "91320100123456788C"

MAPPING = RecordMapping(
    record_type="population.resident",
    key_kind=KeyKind.ID_CARD,
    key_field="sfzh",
    id_field="id",
    field_map={"name": "xm", "birth_date": "csrq", "city": "address.city", "allowance": "bt"},
    updated_at_field="gxsj",
)


def good_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 7,
        "sfzh": ID,
        "xm": "王伟",
        "csrq": date(1949, 12, 31),
        "address": {"city": "北京市"},
        "bt": Decimal("1234.50"),
        "gxsj": datetime(2024, 5, 1, 8, 0),
    }
    row.update(changes)
    return row


def test_a_good_row_becomes_a_record() -> None:
    record = MAPPING.map_row(good_row())
    assert isinstance(record, SourceRecord)
    assert record.record_type == "population.resident"
    assert record.source_record_id == "7"
    assert record.subject == parse_key(KeyKind.ID_CARD, ID)
    assert record.fields == {
        "name": "王伟",
        "birth_date": "1949-12-31",
        "city": "北京市",
        "allowance": 1234.5,
    }
    # Naive source times are Beijing time unless the mapping says otherwise.
    assert record.updated_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width
        "11010519491231002x",  # lower-case check letter
        " 110105 19491231 002X ",  # spaces
    ],
)
def test_source_keys_are_normalized(raw: str) -> None:
    record = MAPPING.map_row(good_row(sfzh=raw))
    assert isinstance(record, SourceRecord)
    assert record.subject.value == ID


@pytest.mark.parametrize(
    ("changes", "record_id", "reason"),
    [
        ({"sfzh": "110105194912310021"}, "7", "key field 'sfzh': ID_CARD: "),
        ({"sfzh": None}, "7", "key field 'sfzh' is missing or empty"),
        ({"sfzh": "   "}, "7", "key field 'sfzh' is missing or empty"),
        ({"id": None}, "row 3", "id field 'id' is missing or empty"),
        ({"id": ""}, "row 3", "id field 'id' is missing or empty"),
        ({"bt": float("nan")}, "7", "field 'allowance' (from 'bt'): nan is not a finite number"),
        ({"xm": b"\x00\x01"}, "7", "field 'name' (from 'xm'): binary data"),
        ({"gxsj": "yesterday"}, "7", "updated_at field 'gxsj': "),
    ],
)
def test_malformed_rows_are_rejected_with_a_reason(
    changes: dict[str, Any], record_id: str, reason: str
) -> None:
    rejection = MAPPING.map_row(good_row(**changes), where="row 3")
    assert isinstance(rejection, Rejection)
    assert rejection.source_record_id == record_id
    assert rejection.reason.startswith(reason)
    # The raw row travels with the rejection (dead letters), JSON-friendly.
    assert rejection.raw is not None
    assert set(rejection.raw) == set(good_row())
    assert rejection.raw["csrq"] == "1949-12-31"


def test_a_bad_key_rejection_never_spells_out_the_key() -> None:
    rejection = MAPPING.map_row(good_row(sfzh="110105194912310021"))
    assert isinstance(rejection, Rejection)
    assert "110105194912310021" not in rejection.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 1, 8, 0), datetime(2024, 5, 1, 0, 0, tzinfo=UTC)),
        ("2024-05-01 08:00:00", datetime(2024, 5, 1, 0, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00+00:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        (date(2024, 5, 1), datetime(2024, 4, 30, 16, 0, tzinfo=UTC)),
        (1714550400, datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),  # Unix seconds
        (1714550400000, datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),  # Unix milliseconds
    ],
)
def test_updated_at_values_become_utc(value: Any, expected: datetime) -> None:
    record = MAPPING.map_row(good_row(gxsj=value))
    assert isinstance(record, SourceRecord)
    assert record.updated_at == expected
    utc = MAPPING.model_copy(update={"naive_utc_offset": "+00:00"}).map_row(good_row(gxsj=value))
    assert isinstance(utc, SourceRecord)
    assert utc.updated_at is not None
    assert utc.updated_at.tzinfo is not None


def test_missing_source_fields_are_left_out_and_nulls_kept() -> None:
    row = good_row(xm=None)
    del row["csrq"]
    del row["address"]
    record = MAPPING.map_row(row)
    assert isinstance(record, SourceRecord)
    assert record.fields == {"name": None, "allowance": 1234.5}


def test_related_keys_are_validated_and_bad_ones_reject_the_row() -> None:
    mapping = RecordMapping(
        record_type="market.business_license",
        key_kind=KeyKind.USCC,
        key_field="uscc",
        id_field="id",
        field_map={"name": "name"},
        related_key_fields={KeyKind.ORG_CODE: "org"},
    )
    record = mapping.map_row({"id": "B1", "uscc": USCC, "org": "12345678-8", "name": "某公司"})
    assert isinstance(record, SourceRecord)
    assert record.related_subjects == (parse_key(KeyKind.ORG_CODE, "12345678-8"),)
    assert mapping.key_field_for(KeyKind.ORG_CODE) == "org"
    assert mapping.key_field_for(KeyKind.ID_CARD) is None
    without = mapping.map_row({"id": "B1", "uscc": USCC, "name": "某公司"})
    assert isinstance(without, SourceRecord)
    assert without.related_subjects == ()
    bad = mapping.map_row({"id": "B1", "uscc": USCC, "org": "12345678-1", "name": "某公司"})
    assert isinstance(bad, Rejection)
    assert bad.reason.startswith("key field 'org': ORG_CODE: ")


@pytest.mark.parametrize(
    ("coercion", "value", "expected"),
    [
        ("integer", "100000", 100000),
        ("integer", 12.0, 12),
        ("number", "1234.5", 1234.5),
        ("number", "12", 12),
        ("boolean", "是", True),
        ("boolean", "N", False),
        ("boolean", 1, True),
        ("date", "2019/03/01", "2019-03-01"),
        ("date", "20190301", "2019-03-01"),
        ("date", "2019年3月1日", "2019-03-01"),
        ("date", "2019-03-01T10:00:00", "2019-03-01"),
        ("datetime", "2019-03-01 10:00:00", "2019-03-01T10:00:00"),
        ("string", 13800138000, "13800138000"),
    ],
)
def test_field_types_coerce_text_values(coercion: str, value: Any, expected: Any) -> None:
    mapping = MAPPING.model_copy(update={"field_types": {"name": coercion}})
    record = mapping.map_row(good_row(xm=value))
    assert isinstance(record, SourceRecord)
    assert record.fields["name"] == expected
    assert type(record.fields["name"]) is type(expected)


@pytest.mark.parametrize(
    ("coercion", "value"),
    [
        ("integer", "12.5"),
        ("integer", True),
        ("number", "abc"),
        ("boolean", "maybe"),
        ("date", "1949-13-45"),
    ],
)
def test_values_that_do_not_coerce_reject_the_row(coercion: str, value: Any) -> None:
    mapping = MAPPING.model_copy(update={"field_types": {"name": coercion}})
    rejection = mapping.map_row(good_row(xm=value))
    assert isinstance(rejection, Rejection)
    assert rejection.reason.startswith("field 'name' (from 'xm'): ")


def test_jsonable_converts_database_types() -> None:
    assert jsonable(Decimal("10.00")) == 10
    assert type(jsonable(Decimal("10.00"))) is int
    assert jsonable(Decimal("0.1")) == 0.1
    assert jsonable(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert jsonable(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert jsonable({"a": [date(2024, 1, 2), None, True]}) == {"a": ["2024-01-02", None, True]}
    for bad in (math.inf, Decimal("NaN"), b"x", object()):
        with pytest.raises(ValueError, match=r"cannot be a record field|not a finite number"):
            jsonable(bad)


@pytest.mark.parametrize(
    ("flag", "deleted"),
    [
        (True, True),
        (1, True),
        ("Y", True),
        ("是", True),
        ("deleted", True),
        (False, False),
        (0, False),
        ("N", False),
        (None, False),
    ],
)
def test_deletion_flags_make_delete_changes(flag: Any, deleted: bool) -> None:
    mapping = MAPPING.model_copy(update={"deleted_field": "zx"})
    change = mapping.map_change({**good_row(), "zx": flag})
    assert change.kind is (ChangeKind.DELETE if deleted else ChangeKind.UPSERT)
    assert change.source_record_id == "7"


def test_rejected_rows_become_rejected_changes_with_reason_and_raw_row() -> None:
    change = MAPPING.map_change(good_row(sfzh="bad"), where="f.csv:3")
    assert change.kind is ChangeKind.REJECTED
    assert change.record_type == "population.resident"
    assert change.reason.startswith("key field 'sfzh': ID_CARD")
    assert change.raw is not None
    assert change.raw["sfzh"] == "bad"


@pytest.mark.parametrize(
    ("options", "field", "rule"),
    [
        ({"key_kind": "ID_CARD"}, "options.record_type", "required"),
        (
            {**MAPPING.model_dump(), "surprise": 1},
            "options.surprise",
            "unknown option",
        ),
        (
            {**MAPPING.model_dump(), "key_kind": "PASSPORT"},
            "options.key_kind",
            "Input should be",
        ),
        (
            {**MAPPING.model_dump(), "field_types": {"nickname": "string"}},
            "options",
            "field_types names fields not in field_map: nickname",
        ),
        (
            {**MAPPING.model_dump(), "related_key_fields": {"ID_CARD": "x"}},
            "options",
            "related_key_fields repeats the subject's key kind ID_CARD",
        ),
        (
            {**MAPPING.model_dump(), "naive_utc_offset": "8"},
            "options.naive_utc_offset",
            "must look like +08:00",
        ),
    ],
)
def test_options_errors_name_the_option(options: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_options(RecordMapping, options)
    assert caught.value.field == field
    assert caught.value.rule.startswith(rule)


def test_options_error_paths_index_lists_with_brackets() -> None:
    from adapters.mapping import AdapterOptions

    with pytest.raises(ValidationError) as caught:
        AdapterOptions.model_validate({"mappings": [MAPPING.model_dump(), {"key_field": ""}]})
    error = options_error(caught.value)
    assert error.field == "options.mappings[1].record_type"
    assert error.rule.startswith("required (and ")


def test_the_signature_field_is_read_only_when_declared() -> None:
    signed = MAPPING.model_copy(update={"signature_field": "sig"})
    row = good_row(sig="a.b.c")
    assert isinstance(record := signed.map_row(row), SourceRecord)
    assert record.signature == "a.b.c"
    assert isinstance(record := MAPPING.map_row(row), SourceRecord)
    assert record.signature is None  # not declared: never read
    assert isinstance(record := signed.map_row(good_row()), SourceRecord)
    assert record.signature is None  # declared but absent: unsigned
    bad = signed.map_row(good_row(sig={"not": "a string"}))
    assert isinstance(bad, Rejection)
    assert "signature field 'sig' is dict, not a compact JWS string" in bad.reason


def test_http_mappings_read_signature_beside_each_record_by_default() -> None:
    from adapters.http_adapter import HttpOptions

    base = {"base_url": "http://127.0.0.1:1", "fetch": {"path": "/r/{key}"}}
    mapping = MAPPING.model_dump(mode="json", exclude={"signature_field"})
    options = parse_options(HttpOptions, {**base, "mappings": [mapping]})
    assert options.mappings[0].signature_field == "signature"
    chosen = parse_options(
        HttpOptions, {**base, "mappings": [{**mapping, "signature_field": "jws"}]}
    )
    assert chosen.mappings[0].signature_field == "jws"
