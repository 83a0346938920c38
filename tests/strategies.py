"""Hypothesis strategies for arbitrary JSON, shared by the wire formats' property tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Every JSON scalar msgspec round-trips exactly: 64-bit integers, finite floats, text, null.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
