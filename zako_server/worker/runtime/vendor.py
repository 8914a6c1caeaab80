"""The npm packages the runtime's Node and web layers load (see node.js and web.js).

They are installed into zako_server/jsdeps/node_modules by `make setup` (`npm ci`), never
copied into the repository. Every V8 instance receives their module files as source text
when it is made (~220 KB of strings), and the prelude compiles a file only the first time
a task needs it, resolving each `require` as Node does when it is called (prelude.js).

Which files: nothing here reads the packages' source. The set comes from their manifests,
the data npm itself publishes by: the packages are ROOTS and, recursively, their
package.json `dependencies`; a package's module files are its `main` plus the `.js` and
`.json` files its `files` field publishes, less the ES build it names as `module` (which
CommonJS never loads). A package without a `files` field publishes its tests and
minified builds too, so only its `main` is sent: all of today's are one file, and a
relative require of a file left out fails loudly ("the runtime library ... is not
installed"), in the tests that load every layer. tr46's ~200 KB of IDNA tables are
replaced by tr46.js (see there).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath

# Entry points the layers ask for by name, as host.vendor(name).
ROOTS = ("buffer", "events", "path-browserify", "string_decoder", "whatwg-url")
# Packages replaced by a file of this directory: (file, the packages that file requires).
_SHIMS = {"tr46": ("tr46.js", ("punycode",))}
_MODULE_SUFFIXES = (".js", ".cjs", ".json")


class VendorMissing(RuntimeError):
    """zako_server/jsdeps/node_modules is not installed (run `make setup`)."""


def node_modules() -> Path:
    return Path(__file__).resolve().parents[2] / "jsdeps" / "node_modules"


def _manifest(root: Path, name: str) -> dict[str, object]:
    path = root / name / "package.json"
    if not path.is_file():
        raise VendorMissing(f"{path} is missing (run `make setup`)")
    return json.loads(path.read_text(encoding="utf-8"))


def _file(root: Path, path: str) -> str:
    """Node's file resolution for a path inside node_modules: as is, .js, .json, /index.js."""
    path = str(PurePosixPath(path))
    for candidate in (path, path + ".js", path + ".json", path + "/index.js"):
        if (root / candidate).is_file():
            return candidate
    raise VendorMissing(f"{path} is not in {root} (run `make setup`)")


def _published(root: Path, name: str, meta: dict[str, object]) -> list[str]:
    """The package's module files (see the module docstring), as node_modules paths."""
    base = root / name
    main = _file(root, f"{name}/{meta.get('main') or 'index.js'}")
    found = {main}
    patterns = meta.get("files")
    if isinstance(patterns, list):
        for pattern in patterns:
            target = base / str(pattern).rstrip("/")
            matches = target.rglob("*") if target.is_dir() else base.glob(str(pattern))
            for path in matches:
                module = path.suffix in _MODULE_SUFFIXES and path.name != "package.json"
                if module and path.is_file():
                    found.add(path.relative_to(root).as_posix())
    es_build = meta.get("module")
    if isinstance(es_build, str):
        found.discard(str(PurePosixPath(name) / es_build))
    return sorted(found)


@cache
def bundle() -> dict[str, object]:
    """{"files": {path: source}, "mains": {package: path}} for every vendored package."""
    root = node_modules()
    if not root.is_dir():
        raise VendorMissing(f"{root} is missing (run `make setup`)")
    shims = resources.files(__package__)
    files: dict[str, str] = {}
    mains: dict[str, str] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in mains:
            continue
        if name in _SHIMS:
            shim, needs = _SHIMS[name]
            mains[name] = f"{name}/{shim}"
            files[mains[name]] = shims.joinpath(shim).read_text(encoding="utf-8")
            todo.extend(needs)
            continue
        meta = _manifest(root, name)
        for path in _published(root, name, meta):
            files[path] = (root / path).read_text(encoding="utf-8")
        mains[name] = _file(root, f"{name}/{meta.get('main') or 'index.js'}")
        dependencies = meta.get("dependencies") or {}
        if isinstance(dependencies, dict):
            todo.extend(str(dep) for dep in dependencies)
    return {"files": files, "mains": mains}


@cache
def bundle_json() -> str:
    """The bundle as a JavaScript expression (ASCII JSON), for the install script."""
    return json.dumps(bundle(), ensure_ascii=True, separators=(",", ":"))
