"""Declared mappings from a source's rows to records, and the options they sit in.

Every built-in kind except `grpc` reads rows (database rows, JSON objects, CSV lines)
that a department shaped its own way. A `RecordMapping` says which row field holds the
subject key, which the record id, and which source field feeds each declared field of
the record type; `RecordMapping.map_row` turns one row into a `SourceRecord`, or into a
`Rejection` saying which rule the row broke. A malformed row never fails a whole call.

The kinds' option models extend `AdapterOptions`; `parse_options` validates an
adapter's free-form ``options`` and reports the first problem as `InvalidRequest` with
a field path such as ``options.mappings[0].key_field``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.base import AdapterSpec, Change, ChangeKind, Rejection
from domain.errors import InvalidKey, InvalidRequest
from domain.records import SourceRecord
from domain.subjects import KeyKind, SubjectKey, mask_identifiers, parse_key

__all__ = [
    "AdapterOptions",
    "Coercion",
    "OptionsModel",
    "RecordMapping",
    "jsonable",
    "options_error",
    "parse_options",
    "record_matches",
]

Coercion = Literal["string", "integer", "number", "boolean", "date", "datetime"]
"""How a text-typed source value (a CSV cell, a VARCHAR column) becomes a field's type."""

_OFFSET: Final = re.compile(r"^[+-](0\d|1[0-4]):[0-5]\d$")
_TRUE: Final = frozenset({"1", "true", "t", "yes", "y", "是"})
_FALSE: Final = frozenset({"0", "false", "f", "no", "n", "否"})
_DELETED: Final = _TRUE | {"deleted", "d", "删除"}
_DATE_FORMATS: Final = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")
_RAW_TEXT_LIMIT: Final = 200
_MILLISECONDS: Final = 100_000_000_000


class OptionsModel(BaseModel):
    """Base of every options model: frozen, and unknown option names are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordMapping(OptionsModel):
    """How one source row becomes one record of `record_type`.

    `field_map` maps the record type's declared field names to source field names.
    A source field name may be a dotted path into nested objects (``person.name``) when
    the row has no field spelled with the dot. A source field missing from a row is left
    out of the record; a present null stays null.
    """

    record_type: str = Field(min_length=1)
    key_kind: KeyKind
    key_field: str = Field(min_length=1)
    id_field: str = Field(min_length=1)
    field_map: dict[str, str] = Field(min_length=1)
    related_key_fields: dict[KeyKind, str] = Field(default_factory=dict)
    updated_at_field: str | None = None
    # Truthy (true, 1, "Y", "deleted", "是") marks the row as a deletion in change streams.
    deleted_field: str | None = None
    # Declared field -> type, for sources whose values arrive as text (CSV, VARCHAR).
    field_types: dict[str, Coercion] = Field(default_factory=dict)
    # Applied to `updated_at` values written without a UTC offset (Beijing time default).
    naive_utc_offset: str = "+08:00"
    # Source field holding the department's JWS over the record (`signing.department`);
    # None reads none. `http` adapters default it to "signature". A row without it has none.
    signature_field: str | None = Field(default=None, min_length=1)

    @field_validator("naive_utc_offset")
    @classmethod
    def _offset_shape(cls, value: str) -> str:
        if not _OFFSET.match(value):
            raise ValueError("must look like +08:00")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.key_kind in self.related_key_fields:
            raise ValueError(f"related_key_fields repeats the subject's key kind {self.key_kind}")
        undeclared = sorted(set(self.field_types) - set(self.field_map))
        if undeclared:
            raise ValueError(f"field_types names fields not in field_map: {', '.join(undeclared)}")
        return self

    def key_field_for(self, kind: KeyKind) -> str | None:
        """The source field holding keys of `kind`, or None when this mapping has none."""
        if kind == self.key_kind:
            return self.key_field
        return self.related_key_fields.get(kind)

    def subject_of(self, row: Mapping[str, Any]) -> SubjectKey | None:
        """The row's subject key, or None when it is missing or invalid."""
        try:
            return _key(self.key_kind, _lookup(row, self.key_field))
        except (_Missing, InvalidKey):
            return None

    def is_deletion(self, row: Mapping[str, Any]) -> bool:
        """True when `deleted_field` is declared and marks the row as deleted."""
        if self.deleted_field is None:
            return False
        try:
            flag = _lookup(row, self.deleted_field)
        except _Missing:
            return False
        if isinstance(flag, str):
            return flag.strip().lower() in _DELETED
        return bool(flag)

    def map_row(self, row: Mapping[str, Any], *, where: str = "") -> SourceRecord | Rejection:
        """Turn one source row into a record, or a rejection with the rule it broke.

        `where` (``export.csv:17``) names the row in rejections that have no record id.
        Never raises for bad data: every problem becomes a `Rejection` with the raw row.
        """
        try:
            record_id = _record_id(row, self.id_field)
        except _Missing:
            return Rejection(where, f"id field {self.id_field!r} is missing or empty", raw_row(row))
        try:
            return self._record(row, record_id)
        except _RowProblem as problem:
            return Rejection(record_id, str(problem), raw_row(row))

    def map_change(self, row: Mapping[str, Any], *, where: str = "") -> Change:
        """The change a row means in a change stream: UPSERT, DELETE or REJECTED."""
        if self.is_deletion(row):
            try:
                record_id = _record_id(row, self.id_field)
            except _Missing:
                reason = f"deletion without id field {self.id_field!r}"
                return Change(ChangeKind.REJECTED, self.record_type, where, reason=reason)
            return Change(ChangeKind.DELETE, self.record_type, record_id)
        mapped = self.map_row(row, where=where)
        if isinstance(mapped, Rejection):
            return Change(
                ChangeKind.REJECTED,
                self.record_type,
                mapped.source_record_id,
                reason=mapped.reason,
                raw=mapped.raw,
            )
        return Change(ChangeKind.UPSERT, self.record_type, mapped.source_record_id, mapped)

    def _record(self, row: Mapping[str, Any], record_id: str) -> SourceRecord:
        subject = self._subject(row, self.key_kind, self.key_field, required=True)
        assert subject is not None  # required=True never returns None
        related: list[SubjectKey] = []
        for kind, source_field in self.related_key_fields.items():
            key = self._subject(row, kind, source_field, required=False)
            if key is not None and key != subject and key not in related:
                related.append(key)
        fields: dict[str, Any] = {}
        for declared, source_field in self.field_map.items():
            try:
                value = _lookup(row, source_field)
            except _Missing:
                continue
            try:
                value = jsonable(value)
                coercion = self.field_types.get(declared)
                if coercion is not None and value is not None:
                    value = _coerce(value, coercion)
            except (TypeError, ValueError) as exc:
                raise _RowProblem(f"field {declared!r} (from {source_field!r}): {exc}") from exc
            fields[declared] = value
        return SourceRecord(
            record_type=self.record_type,
            source_record_id=record_id,
            subject=subject,
            fields=fields,
            related_subjects=tuple(related),
            updated_at=self._updated_at(row),
            signature=self._signature(row),
        )

    def _signature(self, row: Mapping[str, Any]) -> str | None:
        if self.signature_field is None:
            return None
        try:
            value = _lookup(row, self.signature_field)
        except _Missing:
            return None
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _RowProblem(
                f"signature field {self.signature_field!r} is {type(value).__name__}, "
                "not a compact JWS string"
            )
        return value

    def _subject(
        self, row: Mapping[str, Any], kind: KeyKind, source_field: str, *, required: bool
    ) -> SubjectKey | None:
        try:
            return _key(kind, _lookup(row, source_field))
        except _Missing as exc:
            if not required:
                return None
            raise _RowProblem(f"key field {source_field!r} is missing or empty") from exc
        except InvalidKey as exc:
            # The rule names no identifier, so the reason is safe to log.
            raise _RowProblem(f"key field {source_field!r}: {kind}: {exc.key_rule}") from exc

    def _updated_at(self, row: Mapping[str, Any]) -> datetime | None:
        if self.updated_at_field is None:
            return None
        try:
            value = _lookup(row, self.updated_at_field)
        except _Missing:
            return None
        try:
            moment = _datetime(value)
        except (TypeError, ValueError) as exc:
            raise _RowProblem(f"updated_at field {self.updated_at_field!r}: {exc}") from exc
        if moment.tzinfo is None:
            sign = -1 if self.naive_utc_offset.startswith("-") else 1
            hours, minutes = self.naive_utc_offset[1:].split(":")
            offset = timedelta(hours=int(hours), minutes=int(minutes)) * sign
            moment = moment.replace(tzinfo=timezone(offset))
        return moment.astimezone(UTC)


class AdapterOptions(OptionsModel):
    """Options shared by the kinds that read rows: the mappings from rows to records."""

    mappings: list[RecordMapping] = Field(min_length=1)

    def check_serves(self, spec: AdapterSpec) -> None:
        """Check the mappings against what the adapter declares it serves.

        Raises `InvalidRequest` (``options.mappings[i].record_type`` or
        ``options.mappings``) when a mapping maps an unserved record type or a served
        record type and key kind has no mapping to answer it.
        """
        for position, mapping in enumerate(self.mappings):
            if mapping.record_type not in spec.serves:
                raise InvalidRequest(
                    f"options.mappings[{position}].record_type",
                    f"{mapping.record_type!r} is not among the record types the adapter serves",
                )
        for record_type, kinds in spec.serves.items():
            for kind in sorted(kinds):
                if not any(
                    m.record_type == record_type and m.key_field_for(kind) for m in self.mappings
                ):
                    raise InvalidRequest(
                        "options.mappings",
                        f"the adapter serves {record_type} by {kind} but no mapping of "
                        f"{record_type} has a {kind} key field",
                    )

    def mappings_for(
        self, kind: KeyKind, record_types: Sequence[str]
    ) -> list[tuple[RecordMapping, str]]:
        """The mappings that answer `record_types` by a `kind` key, with the key field."""
        chosen: list[tuple[RecordMapping, str]] = []
        for mapping in self.mappings:
            source_field = mapping.key_field_for(kind)
            if source_field is not None and mapping.record_type in record_types:
                chosen.append((mapping, source_field))
        return chosen


Options = TypeVar("Options", bound=BaseModel)


def parse_options(model: type[Options], options: Mapping[str, Any]) -> Options:
    """Validate an adapter's ``options`` with `model`.

    Raises `InvalidRequest` naming the first bad option (``options.<path>``).
    """
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise options_error(exc, model=model) from exc


def options_error(
    exc: ValidationError, prefix: str = "options", model: type[BaseModel] | None = None
) -> InvalidRequest:
    """The first error of `exc` as `InvalidRequest`, with a path like ``options.a[0].b``.

    A misspelled option (unknown, and so a required one missing) is named first, with the
    closest option `model` knows at that place (``did you mean 'base_url'?``).
    """
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path = prefix
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if first["type"] == "extra_forbidden":
        rule = "unknown option"
        known = _fields_at(model, first["loc"][:-1]) if model is not None else set()
        close = difflib.get_close_matches(str(first["loc"][-1]), sorted(known), n=1)
        if close:
            rule += f"; did you mean {close[0]!r}?"
    elif first["type"] == "missing":
        rule = "required"
    else:
        rule = first["msg"].removeprefix("Value error, ")
    if exc.error_count() > 1:
        rule += f" (and {exc.error_count() - 1} more)"
    return InvalidRequest(path, rule)


def _fields_at(model: Any, loc: Sequence[int | str]) -> set[str]:
    """The option names the model at `loc` (inside `model`) knows; empty when none."""
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(model)
            model = args[0] if args else None
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return set()
        model = fields[part].annotation
        if typing.get_origin(model) in (types.UnionType, typing.Union):
            model = next((a for a in typing.get_args(model) if a is not type(None)), None)
    fields = getattr(model, "model_fields", None) or {}
    return {field.alias or name for name, field in fields.items()}


def record_matches(record: SourceRecord, subject: SubjectKey) -> bool:
    """True when `record` is about `subject`, by its own key or a key it names."""
    return (
        record.subject == subject
        or subject in record.related_subjects
        or subject in record.subject.related()
    )


def jsonable(value: Any) -> Any:
    """`value` as JSON can hold it: dates as ISO strings, decimals as int or float.

    Raises `ValueError` for binary data, non-finite numbers and other types JSON
    cannot represent.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError("binary data cannot be a record field")
    raise ValueError(f"a {type(value).__name__} cannot be a record field")


def raw_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-friendly copy of a source row for a rejection (dead letter)."""
    copy: dict[str, Any] = {}
    for name, value in row.items():
        try:
            copy[str(name)] = jsonable(value)
        except ValueError:
            text = repr(value)
            copy[str(name)] = text[:_RAW_TEXT_LIMIT]
    return copy


class _Missing(Exception):
    """A row has no (or an empty) value for a field."""


class _RowProblem(Exception):
    """A row breaks a mapping rule; the message is the rejection reason."""


def _lookup(row: Mapping[str, Any], source_field: str) -> Any:
    if source_field in row:
        return row[source_field]
    if "." not in source_field:
        raise _Missing(source_field)
    value: Any = row
    for part in source_field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise _Missing(source_field)
        value = value[part]
    return value


def _record_id(row: Mapping[str, Any], id_field: str) -> str:
    value = _lookup(row, id_field)
    if value is None or isinstance(value, bool):
        raise _Missing(id_field)
    text = str(jsonable(value)).strip()
    if not text:
        raise _Missing(id_field)
    return text


def _key(kind: KeyKind, value: Any) -> SubjectKey:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Missing(kind)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidKey(kind, f"must be text, got {type(value).__name__}")
    return parse_key(kind, value)


def _coerce(value: Any, coercion: Coercion) -> Any:
    if coercion == "string":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if coercion == "integer":
        return _integer(value)
    if coercion == "number":
        return _number(value)
    if coercion == "boolean":
        return _boolean(value)
    if coercion == "date":
        return _date(value).isoformat()
    return _datetime(value).isoformat()


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{_shown(value)} is not an integer")


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:
            number = float(value.strip())
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ValueError(f"{_shown(value)} is not a number")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{_shown(value)} is not a boolean")


def _date(value: Any) -> date:
    if isinstance(value, str):
        text = value.strip()
        try:
            return (
                datetime.fromisoformat(text).date() if len(text) > 10 else date.fromisoformat(text)
            )
        except ValueError:
            pass
        for pattern in _DATE_FORMATS:
            try:
                return datetime.strptime(text, pattern).date()
            except ValueError:
                continue
    raise ValueError(f"{_shown(value)} is not a date")


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        # Unix time; JSON APIs often send milliseconds (anything past the year 5138 is).
        seconds = value / 1000 if abs(value) >= _MILLISECONDS else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"{_shown(value)} is not a time") from exc
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{_shown(value)} is not a date and time")


def _shown(value: Any) -> str:
    # Reasons end up in logs and dead letters: never spell out an identifier.
    text = mask_identifiers(repr(value))
    return text if len(text) <= 40 else text[:40] + "..."
