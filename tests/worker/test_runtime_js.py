"""How the worker writes Python values into the JavaScript of a task's eval (`_js`):
ASCII-only JSON text, whichever encoder made it, that reads back as the same value."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from zako_server.worker.runtime import _js

# What the driver hands `_js`: texts (any code point, lone surrogates too: a module's text
# may hold one), ints past 64 bits, booleans, None, and lists and string-keyed dicts.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(VALUES)
def test_js_is_ascii_json_of_the_same_value(value: object) -> None:
    text = _js(value)
    assert text.isascii()
    assert json.loads(text) == value


def test_js_escapes_what_javascript_source_must_not_hold_raw() -> None:
    assert _js("a\u2028b\u2029") == '"a\\u2028b\\u2029"'
    assert _js(["é", "\ud800"]) == '["\\u00e9","\\ud800"]'
    assert _js({"n": 2**70, "t": True}) == '{"n":1180591620717411303424,"t":true}'
