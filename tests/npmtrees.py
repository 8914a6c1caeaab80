"""Real npm package trees for tests, and Node's own answer for the same files.

Why: the module system is only right if it does what Node does with the tree `npm
install` leaves, so tests install real packages (pinned versions, from the npm registry)
once into a cache they all reuse, send the tree as a task's modules, and compare with
`node` running the very same files.

- `install("semver@7.6.3", ...)` -> the cache directory holding `node_modules/`; a no-op
  when it is there already (~/.cache/zako-tests/npm/<specs>/, or $ZAKO_NPM_CACHE).
  Install scripts never run (`--ignore-scripts`): a task can run none either.
- `pack(root)` -> {relative POSIX path: text} for every file under root, the shape of a
  task's module map. Files that are not UTF-8 text (images, .node addons, wasm) are left
  out: a task's modules are strings, and Node could not `require` them as JavaScript
  either; `pack(..., binary=list)` collects their paths for a test that wants to know.
- `run_node(modules, entry, input)` writes the map into a fresh directory and runs the
  entry as a Zako task would: the entry's export (module.exports, or an ES module's
  default export) is called with (input, context) and its awaited value is the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

NPM_TIMEOUT_S = 300
NODE_TIMEOUT_S = 60
_COMPLETE = ".zako-complete"  # written last: a directory without it is a failed install
_TREE_NAME = "zako-test-tree"
_SAFE = re.compile(r"[^A-Za-z0-9@._+-]")

# The harness Node runs: the same calling convention as the Zako prelude's start().
_HARNESS = r"""
import { pathToFileURL } from 'node:url';
const [entry, inputText, contextText] = process.argv.slice(2);
const out = (o) => process.stdout.write('\n@@zako-result@@' + JSON.stringify(o) + '\n');
try {
  const ns = await import(pathToFileURL(entry).href);
  const exported = ns.default;
  const input = JSON.parse(inputText);
  const context = Object.freeze(JSON.parse(contextText));
  const value = typeof exported === 'function' ? await exported(input, context) : exported;
  out({ ok: true, value: value === undefined ? null : value });
} catch (e) {
  const isError = e instanceof Error;
  out({ ok: false, name: isError ? e.name : 'Error', message: isError ? e.message : String(e),
        code: isError && e.code !== undefined ? String(e.code) : null });
}
"""


def cache_root() -> Path:
    """Where installed trees live; shared by every test run on the machine."""
    env = os.environ.get("ZAKO_NPM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "zako-tests" / "npm"


def install(*specs: str) -> Path:
    """Install pinned `name@version` specs together; return the directory with node_modules.

    Safe to call from concurrent test processes: each installs into its own temporary
    directory and renames it into place; the loser of a race throws its copy away.
    """
    if not specs or any("@" not in spec.lstrip("@") for spec in specs):
        raise ValueError(f"pin every package to a version (name@version): {specs}")
    name = "+".join(_SAFE.sub("_", spec) for spec in sorted(specs))
    target = cache_root() / name
    if (target / _COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{name}.{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        manifest = json.dumps({"name": _TREE_NAME, "private": True})
        (staging / "package.json").write_text(manifest + "\n")
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(staging),
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--loglevel=error",
                *specs,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
        (staging / _COMPLETE).write_text("\n".join(specs) + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _COMPLETE).exists():  # a stale, incomplete copy: replace it
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def pack(root: Path, *, prefix: str = "", binary: list[str] | None = None) -> dict[str, str]:
    """Every UTF-8 file under `root` as {prefix + relative POSIX path: text}.

    npm's bookkeeping (`.package-lock.json`, our completion marker) is kept out: Node never
    loads it. Symlinks (npm's `.bin/`) are skipped; the files they point at are packed.
    """
    modules: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if rel in (_COMPLETE, "node_modules/.package-lock.json"):
            continue
        data = path.read_bytes()
        if rel == "package.json" and _TREE_NAME.encode() in data:
            continue  # the manifest install() writes, not part of the tree
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if binary is not None:
                binary.append(prefix + rel)
            continue
        modules[prefix + rel] = text
    return modules


def install_and_pack(*specs: str) -> dict[str, str]:
    """The module map of a tree holding exactly these packages (and their dependencies)."""
    return pack(install(*specs))


@dataclass(frozen=True)
class NodeResult:
    """What Node made of a task: its value, or its error's name, message and code."""

    ok: bool
    value: object = None
    name: str | None = None
    message: str | None = None
    code: str | None = None
    logs: str = ""


def write_tree(modules: dict[str, str], directory: Path) -> None:
    """Write a module map as files, as the task's tree would be on disk."""
    for name, text in modules.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run_node(
    modules: dict[str, str],
    entry: str,
    input: object = None,
    context: dict[str, object] | None = None,
) -> NodeResult:
    """Run `entry` of the module map under Node, as a Zako task runs it."""
    ctx = context or {"kind": "build", "taskId": "node", "labels": {}, "systemAccess": False}
    with tempfile.TemporaryDirectory(prefix="zako-node-") as tmp:
        tree = Path(tmp) / "tree"
        write_tree(modules, tree)
        harness = Path(tmp) / "harness.mjs"
        harness.write_text(_HARNESS)
        proc = subprocess.run(
            [
                "node",
                "--no-warnings",
                str(harness),
                str(tree / entry),
                json.dumps(input),
                json.dumps(ctx),
            ],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
            cwd=tree,
        )
    head, sep, tail = proc.stdout.rpartition("\n@@zako-result@@")
    if not sep:
        raise RuntimeError(f"node printed no result (exit {proc.returncode}): {proc.stderr}")
    data = json.loads(tail)
    if data["ok"]:
        return NodeResult(True, value=data["value"], logs=head)
    return NodeResult(
        False, name=data["name"], message=data["message"], code=data["code"], logs=head
    )


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None
