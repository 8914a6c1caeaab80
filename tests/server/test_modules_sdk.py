"""A project directory as the task's tree, from the SDK (`modules=Path`) and the CLI
(`zako run entry.ts --modules DIR`), through a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zako_sdk import AsyncClient
from zako_sdk.trees import pack_directory


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "node_modules" / "greet").mkdir(parents=True)
    (root / "node_modules" / ".bin").mkdir()
    (root / "node_modules" / "greet" / "package.json").write_text(
        json.dumps({"name": "greet", "exports": {"import": "./g.mjs", "require": "./g.cjs"}})
    )
    (root / "node_modules" / "greet" / "g.mjs").write_text("export default (n) => `hi ${n}`;")
    (root / "node_modules" / "greet" / "g.cjs").write_text("module.exports = () => 'cjs';")
    (root / "node_modules" / ".bin" / "greet").write_text("#!/bin/sh\n")
    (root / "src" / "util.ts").write_text("export const twice = (s: string): string => s + s;")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (root / "main.ts").write_text(
        "import greet from 'greet';\nimport { twice } from './src/util';\n"
        "export default (input: { name: string }) => twice(greet(input.name));\n"
    )
    return root


def test_pack_directory_keeps_paths_and_leaves_out_binaries_and_tooling(project):
    tree = pack_directory(project)
    assert "main.ts" in tree and "src/util.ts" in tree
    assert "node_modules/greet/package.json" in tree
    assert "logo.png" not in tree  # not UTF-8: Node could not load it as a module
    assert not any(name.startswith("node_modules/.bin/") for name in tree)


async def test_sdk_modules_accepts_a_directory(zako_server, project):
    async with AsyncClient(zako_server.target) as client:
        result = await client.run(
            (project / "main.ts").read_text(),
            input={"name": "n"},
            modules=project,
            entry_name="main.ts",
        )
    assert result.value == "hi nhi n"


def test_cli_runs_a_typescript_entry_with_its_project(zako_server, project):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zako_sdk.cli",
            "run",
            str(project / "main.ts"),
            "--modules",
            str(project),
            "--input",
            '{"name": "x"}',
            "--target",
            zako_server.target,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == "hi xhi x"
