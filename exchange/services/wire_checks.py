"""Rules every request message obeys before any servicer sees it (issue 17 §2, §3).

A decoded protobuf message can hold values that no rule of a single RPC thinks of and
that fail deep below it: a NUL byte in any text (PostgreSQL refuses it, so one caller's
NUL used to fail the audit batch it shared with others), a NaN or infinity inside a
`google.protobuf.Struct` (not JSON), or a `Timestamp`/`Duration` outside the range its
definition allows (Python's datetime overflows). `check_message` walks the whole
message once and raises `InvalidRequest` naming the field path and the rule; the
interceptor calls it for every `tongban.v1` request, so every method and every future
one is covered without a check of its own.
"""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from domain.errors import InvalidRequest

# C0 controls except TAB, LF and CR; DEL; C1 controls; lone UTF-16 surrogates.
_FORBIDDEN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# google/protobuf/timestamp.proto: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# google/protobuf/duration.proto: about ±10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST_VALUE = "google.protobuf.ListValue"
_FLOATING = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def text_problem(text: str) -> str | None:
    """Why `text` may not stand in a request field, or None when it may."""
    found = _FORBIDDEN_TEXT.search(text)
    if found is None:
        return None
    return f"must not contain control character U+{ord(found.group()):04X}"


def check_text(text: str, field: str) -> str:
    """Return `text`; raise `InvalidRequest` naming `field` if it holds a control character."""
    problem = text_problem(text)
    if problem is not None:
        raise InvalidRequest(field, problem)
    return text


def check_message(message: Message, path: str = "") -> None:
    """Raise `InvalidRequest` for the first value in `message` that breaks a wire rule."""
    name = message.DESCRIPTOR.full_name
    if name == _TIMESTAMP:
        _check_timestamp(message, path)
        return
    if name == _DURATION:
        _check_duration(message, path)
        return
    if name in (_STRUCT, _VALUE, _LIST_VALUE):
        _check_json(message, path)
        return
    for descriptor, value in message.ListFields():
        where = f"{path}.{descriptor.name}" if path else descriptor.name
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            _check_map(descriptor, value, where)
        elif descriptor.is_repeated:
            for index, item in enumerate(value):
                _check_value(descriptor, item, f"{where}[{index}]")
        else:
            _check_value(descriptor, value, where)


def _check_map(descriptor: FieldDescriptor, mapping: Any, where: str) -> None:
    entry = descriptor.message_type
    assert entry is not None
    value_field = entry.fields_by_name["value"]
    for key, value in mapping.items():
        if isinstance(key, str):
            check_text(key, f"{where} key")
        _check_value(value_field, value, f"{where}[{str(key)[:40]!r}]")


def _check_value(descriptor: FieldDescriptor, value: Any, where: str) -> None:
    if descriptor.type == FieldDescriptor.TYPE_STRING:
        check_text(value, where)
    elif descriptor.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        check_message(value, where)
    elif descriptor.type in _FLOATING and not math.isfinite(value):
        raise InvalidRequest(where, "must be a finite number (not NaN or infinity)")


def _check_timestamp(message: Any, where: str) -> None:
    if not MIN_TIMESTAMP_SECONDS <= message.seconds <= MAX_TIMESTAMP_SECONDS:
        raise InvalidRequest(where, "must be a time between the years 0001 and 9999")
    if not 0 <= message.nanos <= MAX_NANOS:
        raise InvalidRequest(where, f"nanos must be between 0 and {MAX_NANOS}")


def _check_duration(message: Any, where: str) -> None:
    if abs(message.seconds) > MAX_DURATION_SECONDS:
        raise InvalidRequest(where, f"must be within ±{MAX_DURATION_SECONDS} seconds")
    if abs(message.nanos) > MAX_NANOS:
        raise InvalidRequest(where, f"nanos must be between -{MAX_NANOS} and {MAX_NANOS}")
    if (message.seconds > 0 and message.nanos < 0) or (message.seconds < 0 and message.nanos > 0):
        raise InvalidRequest(where, "seconds and nanos must have the same sign")


def _check_json(message: Any, where: str) -> None:
    """A Struct, Value or ListValue: text without controls, finite numbers only."""
    name = message.DESCRIPTOR.full_name
    if name == _STRUCT:
        for key, value in message.fields.items():
            check_text(key, f"{where} key")
            _check_json(value, f"{where}.{key}" if where else key)
    elif name == _LIST_VALUE:
        for index, value in enumerate(message.values):
            _check_json(value, f"{where}[{index}]")
    else:
        kind = message.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(message.number_value):
            raise InvalidRequest(where, "must be a finite number (not NaN or infinity)")
        if kind == "string_value":
            check_text(message.string_value, where)
        elif kind == "struct_value":
            _check_json(message.struct_value, where)
        elif kind == "list_value":
            _check_json(message.list_value, where)
