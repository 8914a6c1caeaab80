"""The process boundary, as the tree draws it: V8 never runs in the server process and
gRPC never loads in a worker. Checked twice: by what each package imports (static, over
every module) and by what a clean interpreter has loaded after importing it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zako_server"

# What a worker must never load, and what the server process must never load.
WORKER_FORBIDDEN = ("grpc", "google.protobuf", "zako_sdk", "opentelemetry", "prometheus_client")
SERVER_FORBIDDEN = ("py_mini_racer",)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _modules(folder: Path) -> list[Path]:
    modules = sorted(folder.rglob("*.py"))
    assert modules, f"no modules under {folder}"
    return modules


def test_worker_package_imports_neither_grpc_nor_the_server():
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules(PACKAGE / "worker")
        for name in _imports(path)
        if _under(name, (*WORKER_FORBIDDEN, "zako_server.server"))
    }
    assert not bad, bad


def test_transform_package_imports_neither_grpc_nor_the_server():
    """The transform processes hold V8 and sucrase, like workers: no gRPC state in them."""
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules(PACKAGE / "transform")
        for name in _imports(path)
        if _under(name, (*WORKER_FORBIDDEN, "zako_server.server", "zako_server.worker"))
    }
    assert not bad, bad


def test_server_package_imports_neither_v8_nor_the_worker():
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules(PACKAGE / "server")
        for name in _imports(path)
        if _under(name, (*SERVER_FORBIDDEN, "zako_server.worker"))
    }
    assert not bad, bad


def _loaded_after(*modules: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)


def test_a_clean_worker_interpreter_loads_no_grpc():
    worker_modules = [
        "zako_server.worker." + p.stem
        for p in _modules(PACKAGE / "worker")
        if p.parent == PACKAGE / "worker" and p.stem not in ("__init__", "__main__")
    ]
    loaded = _loaded_after("zako_server.worker", "zako_server.worker.runtime", *worker_modules)
    assert "py_mini_racer" in loaded  # the check sees what the worker really imports
    assert [m for m in loaded if _under(m, WORKER_FORBIDDEN)] == []


def test_a_clean_server_interpreter_loads_no_v8():
    loaded = _loaded_after("zako_server.server", "zako_server.__main__")
    assert "grpc" in loaded
    assert [m for m in loaded if _under(m, SERVER_FORBIDDEN)] == []
