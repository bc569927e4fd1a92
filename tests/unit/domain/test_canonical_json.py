"""canonical_json's fast path produces exactly what the RFC 8785 reference produces."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidRequest
from domain.records import MAX_SAFE_INTEGER, canonical_json, content_hash

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | text
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_matches_the_reference_implementation(value):
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": "张三", "c": [True, None, '\u0007\n"\\']},
        {"\U0001f600": 1, "\ue000": 2, "z": 3},  # astral key sorts by UTF-16 units
        {"n": 1e21, "m": 0.1, "k": -0.0},
        {"": "", "A": "a"},
    ],
)
def test_known_cases_match(value):
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [{"n": math.nan}, {"n": math.inf}, {"big": 2**60}, {"s": "\ud800"}, {1: "x"}, {"d": {1, 2}}],
    ids=["nan", "inf", "big int", "lone surrogate", "int key", "set"],
)
def test_non_json_is_refused(value):
    with pytest.raises(InvalidRequest):
        content_hash(value)
