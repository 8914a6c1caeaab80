"""The npm packages the runtime's Node and web layers load (see node.js and web.js).

They are installed into zako_server/jsdeps/node_modules by `make setup` (`npm ci`), never
copied into the repository. Only the files a package's entry point reaches by static
`require("...")` are sent, as source text: every V8 instance receives them when it is
made (~100 KB of strings, about 0.6 ms), and compiles a file only the first time a task
needs it. tr46's ~200 KB of IDNA tables are replaced by tr46.js (see there).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path

# Entry points the layers ask for by name, as host.vendor(name).
ROOTS = ("buffer", "events", "path-browserify", "string_decoder", "whatwg-url")
# Node built-in names vendored code requires: the prelude answers them, not node_modules.
_BUILTINS = frozenset({"buffer", "events", "path", "string_decoder", "util", "url", "process"})
_SHIMS = {"tr46": "tr46.js"}
_REQUIRE = re.compile(r"""\brequire\(\s*(['"])([^'"]+)\1\s*\)""")


class VendorMissing(RuntimeError):
    """zako_server/jsdeps/node_modules is not installed (run `make setup`)."""


def node_modules() -> Path:
    return Path(__file__).resolve().parents[2] / "jsdeps" / "node_modules"


def _package_main(root: Path, name: str) -> str:
    meta = json.loads((root / name / "package.json").read_text(encoding="utf-8"))
    main = meta.get("main") or "index.js"
    return _file(root, f"{name}/{main}".replace("/./", "/"))


def _file(root: Path, path: str) -> str:
    """Node's file resolution for a path inside node_modules: as is, .js, .json, /index.js."""
    path = path.rstrip("/")
    for candidate in (path, path + ".js", path + ".json", path + "/index.js"):
        if (root / candidate).is_file():
            return candidate
    raise VendorMissing(f"{path} is not in {root} (run `make setup`)")


def _resolve(root: Path, importer: str, spec: str) -> str | None:
    if spec.startswith("."):
        base = str(Path(importer).parent / spec)
        return _file(root, str(Path(base)).replace("\\", "/"))
    name = spec.rstrip("/")
    if name in _BUILTINS or name.startswith("node:"):
        return None
    return _package_main(root, name)


@cache
def bundle() -> dict[str, object]:
    """{"files": {path: source}, "mains": {package: path}, "requires": {path: {spec: path}}}."""
    root = node_modules()
    if not root.is_dir():
        raise VendorMissing(f"{root} is missing (run `make setup`)")
    files: dict[str, str] = {}
    requires: dict[str, dict[str, str]] = {}
    mains: dict[str, str] = {}
    shims = resources.files(__package__)
    for package, shim in _SHIMS.items():
        mains[package] = f"{package}/{shim}"
    todo = []
    for name in ROOTS:
        mains[name] = _package_main(root, name)
        todo.append(mains[name])
    while todo:
        path = todo.pop()
        if path in files:
            continue
        package = path.split("/")[0]
        if package in _SHIMS:
            source = shims.joinpath(_SHIMS[package]).read_text(encoding="utf-8")
        else:
            source = (root / path).read_text(encoding="utf-8")
        files[path] = source
        links: dict[str, str] = {}
        for match in _REQUIRE.finditer(source):
            spec = match.group(2)
            bare = spec.rstrip("/")
            if not spec.startswith(".") and bare in _SHIMS:
                target = mains[bare]
            else:
                resolved = _resolve(root, path, spec)
                if resolved is None:
                    continue
                target = resolved
            links[spec] = target
            todo.append(target)
        requires[path] = links
    return {"files": files, "mains": mains, "requires": requires}


@cache
def bundle_json() -> str:
    """The bundle as a JavaScript expression (ASCII JSON), for the install script."""
    return json.dumps(bundle(), ensure_ascii=True, separators=(",", ":"))
