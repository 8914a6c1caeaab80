"""How the worker writes Python values into the JavaScript of a task's call (`_js`):
ASCII-only JSON text, whichever encoder made it, that reads back as the same value, and
the same task whether it goes in as a call (Instance.run) or as a script."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.worker.test_runtime_audit import CONFIG
from zako_server.worker import runtime
from zako_server.worker.runtime import Instance, _js

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


# Names and input a task's call must carry unchanged: a lone surrogate, line and
# paragraph separators, quotes and backslashes, `__proto__`, and text past ASCII.
ODD_NAMES = ["main.js", "__proto__.js", "d\u00e9j\u00e0/\u2028x.js", 'q"\\.js', "s\ud800.js"]
ODD_INPUT = json.dumps({"s": '\u2029\u00e9\ud83d\ude00"\\', "n": 2**53})


@pytest.mark.parametrize("entry", ODD_NAMES)
async def test_the_task_call_and_the_task_script_run_the_same_task(entry: str) -> None:
    """Instance.run (a call with the arguments' JSON as `this`) and an eval of
    script_of (the same arguments as script text) must be two ways into one task."""
    source = "module.exports = (x) => [__filename, x, typeof x]"
    config = {**CONFIG, "reuse": False}
    files = [(entry, "digest-0")]
    give = [("digest-0", source, False)]
    reports = []
    for by_call in (True, False):
        instance = Instance()
        try:
            arguments = runtime.task_arguments(
                instance.token, config, files, give, [], entry, ODD_INPUT
            )
            if by_call:
                text = await instance.run(arguments)
            else:
                text = await instance.eval(runtime.script_of(arguments))
        finally:
            instance.close()
        reports.append(json.loads(text))
    assert reports[0] == reports[1]
    value = json.loads(reports[0]["outcome"]["value"])
    assert value == [entry, json.loads(ODD_INPUT), "object"]
