"""Canonical JSON out (RFC 8785 JCS), strict JSON in.

Everything Tongban signs is the JCS form of a JSON value, so any party can rebuild the
exact signed bytes from the parsed value. Parsing is strict in the ways that matter for
signed data: UTF-8 only, no duplicate member names (RFC 8259 §4 leaves their meaning
open), no NaN or Infinity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import rfc8785

from signing.errors import CanonicalizationError

JSONValue: TypeAlias = (
    bool | int | float | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)
JSONObject: TypeAlias = dict[str, "JSONValue"]


def canonicalize(value: JSONValue) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of `value`.

    Raises:
        CanonicalizationError: `value` holds something JSON cannot carry exactly: NaN or
            infinity, an integer no IEEE 754 double holds exactly (RFC 8785 §3.2.2.3), a
            lone surrogate, bytes, a non-string key or any other non-JSON type.
    """
    try:
        return rfc8785.dumps(_plain(value))
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalizationError(str(exc)) from exc


_SAFE_INTEGER = 2**53 - 1


def _plain(value: object) -> Any:
    """Mappings to dicts and sequences to lists, which is all `rfc8785` accepts."""
    if type(value) is int and not -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
        return _exact_double(value)
    if isinstance(value, str | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_plain(v) for v in value]
    raise CanonicalizationError(f"unsupported type: {type(value).__name__}")


def _exact_double(value: int) -> float:
    # RFC 8785 §3.2.2.3 serializes every number as an IEEE 754 double, so a large
    # integer is fine when a double holds it exactly (2**53 parses back as an int).
    try:
        double = float(value)
    except OverflowError:
        double = float("nan")
    if double != value:
        raise CanonicalizationError(f"{value} is not exactly representable as a JSON number")
    return double


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for name in names if names.count(name) > 1)
        raise CanonicalizationError(f"duplicate member {duplicate!r}")
    return result


def _reject_constant(name: str) -> object:
    raise CanonicalizationError(f"{name} is not JSON")


# Decoders made once: `json.loads` with hooks builds a new one on every call.
_STRICT = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
_ALLOW_DUPLICATES = json.JSONDecoder(parse_constant=_reject_constant)


def loads_object(data: bytes, *, reject_duplicates: bool = True) -> JSONObject:
    """Parse `data` as one strict JSON object, with no whitespace around it.

    `reject_duplicates=False` skips the duplicate-member check (the Python-level hook
    is most of the parse cost) where the bytes are known to come from a canonical writer.

    Raises:
        CanonicalizationError: not UTF-8, not JSON, whitespace or anything else around
            the object, duplicate member names, NaN or Infinity, or not an object.
    """
    decoder = _STRICT if reject_duplicates else _ALLOW_DUPLICATES
    try:
        text = data.decode("utf-8")
        value, end = decoder.raw_decode(text)
        if end != len(text):
            raise CanonicalizationError("data after the JSON value")
    except UnicodeDecodeError as exc:
        raise CanonicalizationError("not UTF-8") from exc
    except RecursionError as exc:
        raise CanonicalizationError("nested too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise CanonicalizationError(f"not JSON: {exc}") from exc
    if type(value) is not dict:
        raise CanonicalizationError("top level is not a JSON object")
    return value
