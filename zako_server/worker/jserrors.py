"""Zako's structured JS error: building it, and recovering it from mini-racer's text.

Most errors arrive already structured from the prelude (it sees the thrown value). Two
kinds only exist as mini-racer exception text and are parsed here:

- parse errors, raised while a module is compiled, before any prelude code can see them.
  mini-racer formats them as (the file is always "<anonymous>", whatever sourceURL says):

      <anonymous>:3: SyntaxError: Unexpected identifier 'b'
        a b;
          ^

      SyntaxError: Unexpected identifier 'b'

- anything that escapes the prelude's own try/catch (it should not happen, but the worker
  must still report something precise): "<file>:<line>: <Name>: <message>", the source
  line, a caret line, then the stack.

The column comes from the caret, and on line 1 the module wrapper's prefix is taken off,
so both point at the author's own text.

It also validates the prelude's outcome report: task code runs in the same isolate, so
Python re-checks every field before anything reaches the parent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zako_server.protocol import FailureReason, JsError

# What the prelude may report; CANCELLED is only ever the worker's own verdict.
_PRELUDE_REASONS = frozenset(FailureReason) - {FailureReason.CANCELLED}


@dataclass(slots=True)
class Outcome:
    """How a task ended, before the worker adds its figures: the DoneEvent's `value`,
    or its `reason` and `error`."""

    value: str | None = None
    reason: FailureReason | None = None
    error: JsError | None = None


_HEADER = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?P<rest>.*)$")
_NAMED = re.compile(r"^(?P<name>[A-Za-z_$][\w$]*): (?P<message>.*)$", re.DOTALL)


def make_error(
    name: str,
    message: str,
    *,
    stack: str | None = None,
    module: str | None = None,
    line: int | None = None,
    column: int | None = None,
    code: str | None = None,
) -> JsError:
    """The error of a failed done event, with a stack made up when none is known."""
    return JsError(
        name,
        message,
        stack or _default_stack(name, message, module, line, column),
        module,
        line,
        column,
        code,
    )


def _default_stack(
    name: str, message: str, module: str | None, line: int | None, column: int | None
) -> str:
    head = f"{name}: {message}" if message else name
    if module is None or line is None:
        return head
    return f"{head}\n    at {module}:{line}:{column if column is not None else 1}"


def _split_name(rest: str, default: str) -> tuple[str, str]:
    match = _NAMED.match(rest)
    if match is None:
        return default, rest
    return match["name"], match["message"]


def _caret_column(lines: list[str]) -> int | None:
    # lines[0] is the header, lines[1] the offending source line, lines[2] the caret.
    if len(lines) < 3 or "^" not in lines[2] or lines[2].strip(" ^"):
        return None
    return lines[2].index("^") + 1


def beyond_source(text: str, source: str) -> bool:
    """Did the parser only complain at the wrapper's closing line, past the author's text?

    That happens when an unbalanced '}' closes the wrapper early; parsing the source once
    more as a plain script (see runtime.diagnose_script) then finds the brace itself.
    """
    header = _HEADER.match(text.split("\n", 1)[0])
    return header is not None and int(header["line"]) > source.count("\n") + 1


def syntax_error(text: str, module: str, source: str, prefix_length: int) -> JsError:
    """The error for a module that did not parse (JSParseException text)."""
    lines = text.split("\n")
    header = _HEADER.match(lines[0])
    if header is None:
        return make_error("SyntaxError", text.strip() or "module did not parse", module=module)
    name, message = _split_name(header["rest"], "SyntaxError")
    line = int(header["line"])
    column = _caret_column(lines)
    if column is not None and line == 1:
        column -= prefix_length
    source_lines = source.split("\n")
    if line > len(source_lines):
        # The parser only noticed at the wrapper's closing line (e.g. an unbalanced '}'
        # closed the wrapper early): point at the end of the author's text instead.
        line = len(source_lines)
        column = len(source_lines[-1]) + 1
    if column is not None:
        column = max(column, 1)
    return make_error(name, message, module=module, line=line, column=column)


def uncaught_error(text: str, modules_by_file: Mapping[str, str], prefix_length: int) -> JsError:
    """The error for an exception that reached mini-racer (JSEvalException text)."""
    lines = text.split("\n")
    header = _HEADER.match(lines[0])
    if header is None:
        return make_error("Error", text.strip() or "JavaScript failed")
    name, message = _split_name(header["rest"], "Error")
    module = modules_by_file.get(header["file"])
    if module is None:
        return make_error(name, message)
    line = int(header["line"])
    column = _caret_column(lines)
    if column is not None and line == 1:
        column = max(column - prefix_length, 1)
    stack = None
    if "" in lines:
        tail = "\n".join(lines[lines.index("") + 1 :]).strip()
        stack = tail or None
    return make_error(name, message, stack=stack, module=module, line=line, column=column)


# V8's messages for writes to frozen objects, and lockdown.js's for a tamed prototype.
_FROZEN = re.compile(
    r"^Cannot (assign to read only property|add property|redefine property|"
    r"define property|delete property)|is not extensible$"
)


def frozen_builtin(outcome: Outcome) -> bool:
    """Could this failure be a write to a frozen built-in (worth a re-run when fresh)?

    A write to an object the task froze itself matches too; its re-run fails the same way.
    """
    error = outcome.error
    return (
        outcome.reason is FailureReason.JS_ERROR
        and error is not None
        and error.name == "TypeError"
        and _FROZEN.search(error.message) is not None
    )


def failure(reason: FailureReason, error: JsError) -> Outcome:
    """The outcome of a failed task."""
    return Outcome(reason=reason, error=error)


def clean_text(text: str) -> str:
    """V8 strings may hold lone surrogates, which UTF-8 (and so a frame) cannot."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


def check_outcome(raw: Any, max_result_bytes: int) -> Outcome | None:
    """Validate the prelude's outcome (None: not settled). Raises on anything malformed."""
    if raw is None:
        return None
    if raw.get("ok") is True:
        if not isinstance(raw["value"], str):
            raise TypeError("value is not a string")
        value = clean_text(raw["value"])
        size = len(value.encode())
        if size > max_result_bytes:
            return failure(
                FailureReason.RESULT_TOO_LARGE,
                make_error(
                    "RangeError",
                    f"result is {size} bytes of JSON, over the limit of {max_result_bytes} bytes",
                ),
            )
        return Outcome(value=value)
    reason = raw["reason"]
    if reason not in _PRELUDE_REASONS:
        raise ValueError(f"unknown failure reason {reason!r}")
    err = raw["error"]

    def text(key: str) -> str | None:
        v = err.get(key)
        return clean_text(v) if isinstance(v, str) else None

    def position(key: str) -> int | None:
        # A line or column is 1-based; anything else (a negative column from code that
        # eval'd a sourceURL of its own, NaN, a float) is no position at all: left as is,
        # it failed the event's protobuf encoding and the task was reported INTERNAL.
        v = err.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        if v != v or v in (float("inf"), float("-inf")) or v < 1 or v != int(v):
            return None
        return int(v) if v <= 0xFFFFFFFF else None

    return failure(
        FailureReason(reason),
        make_error(
            text("name") or "Error",
            text("message") or "",
            stack=text("stack"),
            module=text("module"),
            line=position("line"),
            column=position("column"),
            code=text("code"),
        ),
    )
