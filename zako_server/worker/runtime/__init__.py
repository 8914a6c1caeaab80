"""The JavaScript side of a worker: the prelude text and the scripts that talk to it.

Everything Python sends into V8 is built here. The task's modules go in as (path,
digest) pairs, with the texts the isolate does not hold yet (once per isolate, see
worker/sources.py) and the transform stage's output for the files it transformed;
modules.js compiles each one when it is first loaded (and, in a warm isolate, keeps the
wrapper for the next task), in an indirect eval of

    (function (exports, require, module, __filename, __dirname, __zimp, __zako_meta) {<source>
    })
    //# sourceURL=<file>

The wrapper opens on the author's line 1 so line numbers need no correction; only columns
on line 1 are shifted, by `prefix_length()` (jserrors takes it off a syntax error's caret
column; the prelude off every stack frame's). The eval's value is the function, so no
module can register anything under another's name.

`Instance` wraps one MiniRacer with the prelude installed and tracks the one thing that
decides what is safe to do with it: whether task code may still be running in it. V8 runs
microtasks *after* an eval has returned, outside anything that can be cancelled, and a
blocking call (heap stats, GC) into a busy isolate would hang the worker's event loop;
close() is always safe, because it terminates whatever runs.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from functools import cache
from importlib import resources
from typing import Any

import orjson
from py_mini_racer import JSFunction, MiniRacer, init_mini_racer

from zako_server.protocol import NODE_BUILTINS
from zako_server.worker.evaluation import BRIEF_WAIT_S, Evaluator
from zako_server.worker.runtime import vendor
from zako_server.worker.sources import Held, TreePack

TOKEN_HEX_CHARS = 32
# The CommonJS wrapper modules.js puts around a module's text (it must be the same text).
_WRAPPER_OPEN = "(function (exports, require, module, __filename, __dirname, __zimp, __zako_meta) {"
# Module names that can be written into `//# sourceURL=` as they are; others get an alias
# (the prelude maps it back), so stack traces still show the author's name.
_PLAIN_NAME = re.compile(r"[\w.\-/@+~$]+")


@cache
def _source(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def prelude_source() -> str:
    """The prelude, a function expression (its parameters: see install_script)."""
    return _source("prelude.js")


# V8's flags for every isolate of a worker process, set once before the first one.
# --single-threaded is mini-racer's default (no background threads: a terminated eval
# leaves nothing of the task running). --no-maglev-osr: a long loop in a warm isolate
# (its function compiled from the same source by an earlier task) ran in Maglev's
# on-stack-replacement code and stayed there, 20 % slower than the TurboFan code a fresh
# isolate reaches: the ~50 ms loop of bench/ took 58-60 ms warm against 48-50 ms fresh.
# Without Maglev OSR a running loop goes to TurboFan; 48-50 ms either way, and the
# repeated typescript and lodash tasks of bench/ did not change (mini-racer 0.14.1,
# V8 14.4).
V8_FLAGS = ("--single-threaded", "--no-maglev-osr")


def init_v8() -> None:
    """Set V8_FLAGS; must run before the process makes its first isolate."""
    init_mini_racer(flags=V8_FLAGS)


def new_token() -> str:
    """A secret per V8 instance: task code cannot call the host API without it."""
    return secrets.token_hex(TOKEN_HEX_CHARS // 2)


_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _js(value: object) -> str:
    """`value` as JSON text that is ASCII only, which keeps character counts identical
    in Python and in V8 (UTF-16). orjson first: the json module builds a new C encoder
    for every list or dict it encodes, and a task's eval encodes ten values (~90k
    instructions a task, a twentieth of a worker's). Text with anything but ASCII, or
    what orjson refuses (a lone surrogate, an int beyond 64 bits), goes the json way."""
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _ENCODE(value)
    return data.decode() if data.isascii() else _ENCODE(value)


def prefix_length(token: str) -> int:
    """How far the CommonJS wrapper shifts columns on a module's line 1 (the same for
    every instance; the token parameter stays for callers that pass it)."""
    return len(_WRAPPER_OPEN)


# The runtime's own libraries: sent as text, compiled by the prelude on first use.
LIBRARIES = ("lockdown", "web", "node", "assert", "inspect", "random")


@cache
def _libraries() -> str:
    return _js({name: _source(f"{name}.js") for name in LIBRARIES})


_NODE_BUILTINS_JSON = json.dumps(list(NODE_BUILTINS))


def install_script(token: str) -> str:
    """The eval that installs the prelude into a fresh instance: the prelude function
    called with (token, prefixLength, libraries, vendor, makeModules, nodeBuiltins)."""
    return (
        f"({prelude_source()})({_js(token)},{prefix_length(token)},{_libraries()},"
        f"{vendor.bundle_json()},{_source('modules.js')},{_NODE_BUILTINS_JSON});\n"
        "//# sourceURL=zako:prelude"
    )


def script_name(name: str, index: int) -> str:
    """The sourceURL for a module: its own name when that is safe to embed."""
    if _PLAIN_NAME.fullmatch(name) and not name.startswith("zako"):
        return name
    return f"zako-module-{index}"


DIAGNOSE_PREFIX = "throw 0;"


def diagnose_script(source: str) -> str:
    """Parse a module as a plain script without running any of it (it throws first).

    Only used to locate a syntax error the wrapper hides; see jserrors.beyond_source.
    """
    return DIAGNOSE_PREFIX + source


def task_script(
    token: str,
    config: dict[str, object],
    modules: list[tuple[str, str]],
    entry: str,
    input_text: str,
    prepared: dict[str, dict[str, object]] | None = None,
    reset_first: bool = False,
) -> str:
    """A task's script (`script_of`) for a tree given as (path, text) pairs, every text
    for this task only (tests and tools that drive an isolate directly; the worker calls
    `Instance.run` with `task_arguments`)."""
    prepared = prepared or {}
    files = [(name, f"inline:{index}") for index, (name, _) in enumerate(modules)]
    # A transformed file's own text is never compiled: only its name goes (for resolution).
    give = [
        (f"inline:{index}", "" if "code" in prepared.get(name, ()) else source, False)
        for index, (name, source) in enumerate(modules)
    ]
    return script_of(
        task_arguments(
            token, config, files, give, [], entry, input_text, prepared, reset_first=reset_first
        )
    )


def task_arguments(
    token: str,
    config: dict[str, object],
    files: list[tuple[str, str]],
    give: list[tuple[str, str, bool]],
    drop: list[str],
    entry: str,
    input_text: str,
    prepared: dict[str, Any] | None = None,
    tree: str | None = None,
    reset_first: bool = False,
) -> str:
    """The arguments of the one call that (resets,) configures, starts and polls a
    task, as the JSON text `Instance.run` takes (the prelude's `task`).

    `files` is the task's tree, (path, digest) in order, and `prepared` the transform
    stage's answer for the files it transformed ({path: {esm, code | code_digest, map,
    error}}). `give` are the texts the isolate does not hold yet, (digest, text, keep),
    and `drop` the digests it must forget (worker/sources.py): a text kept by the isolate
    is pasted into this call once per isolate, not once per task. All go in as arrays
    (never object literals: a file named `__proto__` is a name like any other);
    modules.js compiles a file only when it is first loaded. `tree` is the digest of the
    task's tree pack (worker/sources.py), its text given once per isolate like any kept
    text: modules.js parses it once and resolves names through it and `files`, so a
    repeated tree adds one digest to this call, not a pair per file. `reset_first`
    drops the previous task's state first, in a warm isolate (the prelude's `task`).
    """
    # One encoder call for the whole argument list (tuples encode as arrays): a call per
    # pair cost ~5 µs, 5 ms a task for a 1,000-file tree, and a call per argument 32k
    # instructions a trivial task against 17k for one call (callgrind, this function alone).
    args = (
        token,
        _js(config),
        files,
        list((prepared or {}).items()),
        entry,
        input_text,
        give,
        drop,
        tree,
        reset_first,
    )
    return _js(args)


def script_of(arguments: str) -> str:
    """`task_arguments`' text as a script to eval (tests and tools; the worker calls
    `Instance.run` instead, which compiles nothing)."""
    return f"__zako.task({arguments[1:-1]})"


def failed_module_script(token: str) -> str:
    return f"__zako.failedModule({_js(token)})"


def reset_script(token: str) -> str:
    return f"__zako.reset({_js(token)})"


def fire_script(token: str, timer_id: int) -> str:
    return f"__zako.fire({_js(token)},{int(timer_id)})"


def poll_script(token: str) -> str:
    return f"__zako.poll({_js(token)})"


class Instance:
    """One MiniRacer with the prelude installed (create it inside the running loop)."""

    def __init__(self, brief_wait: float = BRIEF_WAIT_S) -> None:
        self.mr = MiniRacer()
        self.evaluator = Evaluator(self.mr, brief_wait)
        self.token = new_token()
        self.prefix = prefix_length(self.token)
        # The prelude calls this instance makes again and again, built once (their value
        # handles are kept too: Evaluator.eval's `keep`).
        self.poll_text = poll_script(self.token)
        self.reset_text = reset_script(self.token)
        # The (path, digest) pairs of the latest task, for uncaught errors (files()).
        self.task_files: list[tuple[str, str]] = []
        self.task_tree: TreePack | None = None  # and its tree's
        self.held = Held()  # the module texts this isolate was given to keep
        # Set while an eval runs and left set if it fails or is abandoned, until a later
        # eval completes: only then is the isolate known to be idle.
        self.tainted = False
        self.uses = 0  # tasks this isolate has run
        self.retired = False  # set when it must not run another task (see isolates.keep)
        # Set when a task was kept warm without its reset: the next eval of the prelude
        # must reset first (isolates.py says why the reset is deferred).
        self.needs_reset = False
        self.last_heap: dict[str, int] | None = None  # see isolates.heap_reading
        self.heap_age = 0  # tasks since that reading
        self.heap_run_s = 0.0  # and their run time
        try:
            # The prelude answers with the function `run` calls (prelude.js says why).
            function = self.mr.eval(install_script(self.token))
            if not isinstance(function, JSFunction):
                raise RuntimeError("the prelude did not answer with its task function")
            self.task_function: JSFunction = function
        except BaseException:
            self.mr.close()
            raise

    def files(self) -> dict[str, str]:
        """sourceURL -> module name for the latest task's files: built only when an
        error needs it (a 1,000-file tree would cost ~1 ms a task to map up front)."""
        names = [name for name, _ in self.task_files]
        if self.task_tree is not None:
            names += self.task_tree.files
        return {script_name(name, i): name for i, name in enumerate(names)}

    async def eval(self, script: str, timeout: float | None = None, keep: bool = False) -> Any:
        """The eval's value (`timeout`, `keep`: see Evaluator.eval)."""
        self.tainted = True
        result = await self.evaluator.eval(script, timeout, keep)
        self.tainted = False
        return result

    async def run(self, arguments: str) -> Any:
        """A task's one call into the prelude (`arguments`: `task_arguments`' text)."""
        self.tainted = True
        result = await self.evaluator.call(self.task_function, arguments)
        self.tainted = False
        return result

    def heap(self) -> dict[str, int] | None:
        """V8 heap figures, or None when asking could block on running task code."""
        if self.tainted:
            return None
        stats = self.mr.heap_stats()
        return {
            "used": int(stats.get("used_heap_size", 0)),
            "total": int(stats.get("total_heap_size", 0)),
            "limit": int(stats.get("heap_size_limit", 0)),
        }

    def collect(self) -> None:
        if not self.tainted:
            self.mr.low_memory_notification()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.evaluator.unpin(idle=not self.tainted)
        with contextlib.suppress(Exception):
            self.mr.close()
        self.evaluator.close()
