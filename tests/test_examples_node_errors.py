"""#12 item 9: a Node client written from the .proto alone decodes the rich error details.

examples/node/submit.js --unary runs each task as one Run call; the google.rpc types its
statuses carry come from npm's google-proto-files, not from this repository. Real
servers on loopback; skipped without node and npm, as tests/test_examples.py is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "examples" / "node"
# Busy for a moment without a clock (a build context's clock does not move).
SLOW = "let x = 0; for (let i = 0; i < 3e8; i++) x += i; module.exports = x > 0 ? 1 : 0\n"


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if os.environ.get("CI"):
            pytest.fail("CI needs node and npm for the Node client example")
        pytest.skip("node and npm are needed for the Node example")
    installed = NODE_DIR / "node_modules"
    if not all((installed / name).is_dir() for name in ("@grpc/grpc-js", "google-proto-files")):
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    return node


def submit(node: str, target: str, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [node, str(NODE_DIR / "submit.js"), "--target", target, "--quiet", *args],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and "summary" in lines[-1], (proc.stdout, proc.stderr)
    return proc.returncode, lines[-1]


def test_unary_invalid_argument_carries_a_bad_request_naming_the_field(
    node, server_factory, tmp_path
):
    server = server_factory(max_input_bytes="16")
    entry = tmp_path / "echo.js"
    entry.write_text("module.exports = (x) => x\n")
    code, final = submit(node, server.target, "--unary", str(entry), '{"name": "far too long"}')
    assert code == 1
    (result,) = final["results"]
    assert result["outcome"] == "rejected" and result["code"] == "INVALID_ARGUMENT"
    assert result["bad_request"][0]["field"] == "task.input_json"
    assert "limit is 16" in result["bad_request"][0]["description"]


def test_unary_resource_exhausted_carries_retry_info_and_quota_failure(
    node, server_factory, tmp_path
):
    # No action cache: six identical tasks would otherwise run once, the rest joining it.
    server = server_factory(min_workers=1, max_workers=1, queue_capacity=2, action_cache="false")
    entry = tmp_path / "slow.js"
    entry.write_text(SLOW)
    code, final = submit(node, server.target, "--unary", "--count", "6", str(entry))
    assert code == 1
    refused = [r for r in final["results"] if r["outcome"] == "rejected"]
    assert refused and all(r["code"] == "RESOURCE_EXHAUSTED" for r in refused), final
    assert all(r["retry_delay_seconds"] > 0 for r in refused)
    subjects = {v["subject"] for r in refused for v in r["quota_failure"]}
    assert subjects <= {"tenant/anonymous/queue_share"} and subjects, refused
    assert final["summary"]["completed"] >= 1


def test_the_stream_still_reports_rejections_by_their_fields(node, server_factory, tmp_path):
    server = server_factory(max_input_bytes="16")
    entry = tmp_path / "echo.js"
    entry.write_text("module.exports = (x) => x\n")
    code, final = submit(node, server.target, str(entry), '{"name": "far too long"}')
    (result,) = final["results"]
    assert code == 1 and result["outcome"] == "rejected"
    assert result["field"] == "task.input_json"
