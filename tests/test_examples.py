"""The client examples of the README, run against a real server on loopback.

Each test runs exactly what the README shows: grpcurl through server
reflection, the Node client in examples/node, and the Python SDK example. They go
through the `zako_server` fixture of tests/conftest.py (a real server, real V8 workers).

The Node tests need `node` and `npm` on PATH and, the first time, the npm registry
(to fill examples/node/node_modules); without node they are skipped locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NODE_DIR = EXAMPLES / "node"
HELLO_JS = EXAMPLES / "hello.js"
GRPCURL = Path(sys.executable).parent / "grpcurl"


def run(args: list[str], *, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command with a hard timeout; output is captured as text."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


# ---------------------------------------------------------------------------- grpcurl


@pytest.fixture(scope="module")
def grpcurl(zako_server):
    """`grpcurl -plaintext [-d DATA] TARGET WORDS...`, e.g. WORDS = ("list",)."""
    assert GRPCURL.exists(), f"grpcurl not found at {GRPCURL}: install the dev extra"

    def call(*words: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
        flags = ["-d", data] if data is not None else []
        return run([str(GRPCURL), "-plaintext", *flags, zako_server.target, *words])

    return call


def pick(message: dict, name: str):
    """A field of grpcurl's JSON output by its proto name (value_json).

    grpcurl 1.8.x prints proto names; other versions print lowerCamelCase (valueJson).
    """
    head, *rest = name.split("_")
    camel = head + "".join(word.capitalize() for word in rest)
    return message[name] if name in message else message[camel]


def test_grpcurl_lists_services_through_reflection(grpcurl):
    proc = grpcurl("list")
    assert proc.returncode == 0, explain(proc)
    services = proc.stdout.split()
    assert "zako.v1.Executor" in services
    assert "grpc.health.v1.Health" in services


def test_grpcurl_describes_the_executor(grpcurl):
    proc = grpcurl("describe", "zako.v1.Executor")
    assert proc.returncode == 0, explain(proc)
    assert "zako.v1.Executor is a service" in proc.stdout
    for rpc in ("Submit", "Run", "Cancel", "BroadcastGC", "Stats", "Capabilities"):
        assert f"rpc {rpc} (" in proc.stdout, proc.stdout
    assert "rpc Submit ( stream .zako.v1.SubmitRequest ) returns ( stream" in proc.stdout

    proc = grpcurl("describe", "zako.v1.Task")
    assert proc.returncode == 0, explain(proc)
    assert "string input_json = 5;" in proc.stdout


def test_grpcurl_health_check_serving(grpcurl):
    proc = grpcurl("grpc.health.v1.Health/Check")
    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout) == {"status": "SERVING"}

    proc = grpcurl("grpc.health.v1.Health/Check", data='{"service":"zako.v1.Executor"}')
    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout) == {"status": "SERVING"}


def test_grpcurl_run_returns_the_value(grpcurl):
    request = {"task": {"source": "module.exports = (x) => x.n + 1", "input_json": '{"n":41}'}}
    proc = grpcurl("zako.v1.Executor/Run", data=json.dumps(request))
    assert proc.returncode == 0, explain(proc)
    response = json.loads(proc.stdout)
    assert pick(response, "task_id")
    assert pick(response["completed"]["result"], "value_json") == "42"


def test_grpcurl_capabilities(grpcurl):
    proc = grpcurl("zako.v1.Executor/Capabilities")
    assert proc.returncode == 0, explain(proc)
    capabilities = json.loads(proc.stdout)
    assert capabilities["versions"]["protocol"] == "zako.v1"
    assert "zako:core" in pick(capabilities, "builtin_modules")


def test_grpcurl_walkthrough_script(zako_server):
    """examples/grpcurl.sh: list, health, describe, Run, and two tasks on one Submit."""
    env = {**os.environ, "ZAKO_TARGET": zako_server.target, "GRPCURL": str(GRPCURL)}
    proc = run(["bash", str(EXAMPLES / "grpcurl.sh")], env=env, timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert "zako.v1.Executor is a service" in proc.stdout
    assert '"SERVING"' in proc.stdout
    assert proc.stdout.count(': "42"') == 2  # Run's 41 + 1 and Submit's 21 * 2
    assert '"\\"rule\\""' in proc.stdout  # ctx.kind of the second Submit task


# ------------------------------------------------------------------------------- Node


@pytest.fixture(scope="module")
def node_client(zako_server):
    """`node examples/node/submit.js ARGS...` against the test server; npm installs once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        # In CI the Node client is part of what must pass; locally it may be absent.
        if os.environ.get("CI"):
            pytest.fail("CI needs node and npm for the Node client example")
        pytest.skip("node and npm are needed for the Node example")
    installed = NODE_DIR / "node_modules"
    if not all((installed / name).is_dir() for name in ("@grpc/grpc-js", "google-proto-files")):
        proc = run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, timeout=300)
        assert proc.returncode == 0, f"npm ci failed\n{explain(proc)}"

    def submit(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ZAKO_TARGET": zako_server.target}
        return run(
            [node, str(NODE_DIR / "submit.js"), *args], cwd=NODE_DIR, env=env, timeout=timeout
        )

    return submit


def parse_lines(stdout: str) -> tuple[list[dict], dict]:
    """submit.js prints one JSON event per line, then one summary line."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert lines and "summary" in lines[-1], stdout
    return lines[:-1], lines[-1]


def test_node_client_runs_hello(node_client):
    proc = node_client("../hello.js", '{"name":"node"}')
    assert proc.returncode == 0, explain(proc)
    events, final = parse_lines(proc.stdout)

    assert final["summary"]["ok"] is True
    assert final["summary"]["completed"] == 1
    [result] = final["results"]
    assert result["outcome"] == "completed"
    assert result["value"]["greeting"] == "hello, node"
    assert result["value"]["kind"] == "build"

    task_id = result["task_id"]
    kinds = [e["event"] for e in events if e["task_id"] == task_id]
    assert kinds[0] == "accepted"
    assert kinds[-1] == "completed"
    assert "started" in kinds
    logs = [e["log"]["message"] for e in events if e["event"] == "log"]
    assert any("greeting node" in message for message in logs), logs
    [completed] = [e for e in events if e["event"] == "completed"]
    assert json.loads(completed["completed"]["result"]["value_json"]) == result["value"]


def test_node_client_multiplexes_many_tasks_on_one_stream(node_client):
    proc = node_client("--count", "20", "--quiet", "../hello.js", '{"name":"many"}')
    assert proc.returncode == 0, explain(proc)
    events, final = parse_lines(proc.stdout)

    assert events == []  # --quiet prints only the summary
    assert final["summary"]["completed"] == 20
    assert len({r["task_id"] for r in final["results"]}) == 20
    assert all(r["value"] == {"greeting": "hello, many", "kind": "build"} for r in final["results"])


def test_node_client_exits_nonzero_when_a_task_fails(node_client, tmp_path):
    script = tmp_path / "boom.js"
    script.write_text("module.exports = () => { throw new TypeError('boom'); };\n")
    proc = node_client(str(script))
    assert proc.returncode == 1, explain(proc)
    _, final = parse_lines(proc.stdout)
    [result] = final["results"]
    assert result["outcome"] == "failed"
    assert result["reason"] == "FAILURE_REASON_JS_ERROR"
    assert result["error"] == {"name": "TypeError", "message": "boom"}


def test_node_client_reports_an_unreachable_server(node_client):
    proc = node_client("--target", "127.0.0.1:1", "--timeout", "5", "../hello.js", timeout=30)
    assert proc.returncode == 3, explain(proc)
    assert "UNAVAILABLE" in proc.stderr or "DEADLINE_EXCEEDED" in proc.stderr


# ----------------------------------------------------------------------------- Python


def python_env(zako_server) -> dict[str, str]:
    # The repository root first on the path: the examples import zako_sdk from this
    # checkout even where the package is not (or not freshly) installed.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "ZAKO_TARGET": zako_server.target, "PYTHONPATH": path}


def test_python_sdk_example(zako_server):
    env = python_env(zako_server)
    proc = run([sys.executable, str(EXAMPLES / "hello_sdk.py")], env=env, cwd=ROOT)
    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout) == {"greeting": "hello, python", "kind": "build"}


def test_cli_runs_hello(zako_server):
    """`zako run examples/hello.js --input ...`, through the console script's entry point."""
    env = python_env(zako_server)
    code = "import sys; from zako_sdk.cli import main; sys.exit(main())"
    proc = run(
        [sys.executable, "-c", code, "run", str(HELLO_JS), "--input", '{"name":"cli"}'],
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout) == {"greeting": "hello, cli", "kind": "build"}
    assert "greeting cli" in proc.stderr  # the task's console line
