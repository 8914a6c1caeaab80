"""The wire contract: protos/ lints clean, the committed stubs match it, the service is whole.

No server needed. protos/zako/v1/executor.proto is the single source of truth; the Python
stubs in zako_sdk/proto are generated from it by scripts/gen_protos.py (`make gen`) and
committed, so these tests catch an edit to one without the other.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "zako_sdk" / "proto"
GEN_SCRIPT = ROOT / "scripts" / "gen_protos.py"
BUF = Path(sys.executable).parent / "buf"


def _load_gen_protos():
    spec = importlib.util.spec_from_file_location("zako_gen_protos", GEN_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stub_files(root: Path) -> dict[str, bytes]:
    """Every generated .py/.pyi under root, by path relative to root (caches ignored)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.suffix in {".py", ".pyi"} and "__pycache__" not in path.parts
    }


def _proto_deps(root: Path) -> None:
    """google/rpc where buf.yaml looks for it (scripts/proto_deps.py)."""
    spec = importlib.util.spec_from_file_location(
        "zako_proto_deps", ROOT / "scripts" / "proto_deps.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ensure(root)


def test_buf_lint_passes():
    assert BUF.exists(), f"buf not found at {BUF}: install the dev extra (`make setup`)"
    _proto_deps(ROOT)
    proc = subprocess.run([str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"buf lint failed:\n{proc.stdout}{proc.stderr}"


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    generated_dir = tmp_path / "_proto"
    _load_gen_protos().generate(generated_dir)

    fresh = _stub_files(generated_dir)
    committed = _stub_files(COMMITTED)
    assert fresh, "gen_protos.generate wrote no stubs"

    drift = sorted(
        [f"{name} (missing from zako_sdk/proto)" for name in fresh.keys() - committed.keys()]
        + [f"{name} (not generated any more)" for name in committed.keys() - fresh.keys()]
        + [
            f"{name} (differs)"
            for name in fresh.keys() & committed.keys()
            if fresh[name] != committed[name]
        ]
    )
    assert not drift, (
        "zako_sdk/proto drifted from protos/; run `make gen` and commit the result:\n  "
        + "\n  ".join(drift)
    )


# name -> (client_streaming, server_streaming, request type, response type)
EXPECTED_RPCS = {
    "Submit": (True, True, "SubmitRequest", "SubmitResponse"),
    "Run": (False, False, "RunRequest", "RunResponse"),
    "Cancel": (False, False, "CancelRequest", "CancelResponse"),
    "BroadcastGC": (False, False, "BroadcastGCRequest", "BroadcastGCResponse"),
    "Stats": (False, False, "StatsRequest", "StatsResponse"),
    "Capabilities": (False, False, "CapabilitiesRequest", "CapabilitiesResponse"),
    # The content-addressed store (cas.proto), in the spirit of REAPI.
    "FindMissingBlobs": (False, False, "FindMissingBlobsRequest", "FindMissingBlobsResponse"),
    "BatchUpdateBlobs": (False, False, "BatchUpdateBlobsRequest", "BatchUpdateBlobsResponse"),
    "WriteBlob": (True, False, "WriteBlobRequest", "WriteBlobResponse"),
}


@pytest.fixture(scope="module")
def executor_pb2():
    from zako_sdk.proto.zako.v1 import executor_pb2

    return executor_pb2


def test_executor_service_has_its_rpcs(executor_pb2):
    descriptor = executor_pb2.DESCRIPTOR
    assert descriptor.package == "zako.v1"
    service = descriptor.services_by_name["Executor"]
    assert service.full_name == "zako.v1.Executor"

    actual = {
        m.name: (
            m.client_streaming,
            m.server_streaming,
            m.input_type.full_name.removeprefix("zako.v1."),
            m.output_type.full_name.removeprefix("zako.v1."),
        )
        for m in service.methods
    }
    assert actual == EXPECTED_RPCS


def test_submit_events_and_terminal_outcomes(executor_pb2):
    """Clients (SDK, Node example, grpcurl users) switch on these oneof member names."""
    request = executor_pb2.SubmitRequest.DESCRIPTOR.oneofs_by_name["kind"]
    assert [f.name for f in request.fields] == ["task", "cancel", "tasks", "options"]

    event = executor_pb2.SubmitResponse.DESCRIPTOR.oneofs_by_name["event"]
    assert [f.name for f in event.fields] == [
        "accepted",
        "started",
        "log",
        "completed",
        "failed",
        "cancelled",
        "rejected",
        "batch",
    ]

    outcome = executor_pb2.RunResponse.DESCRIPTOR.oneofs_by_name["outcome"]
    assert [f.name for f in outcome.fields] == ["completed", "failed", "cancelled"]


def _buf_json(args: list[str], cwd: Path) -> tuple[int, set[str]]:
    """Run buf with JSON errors in cwd; its exit code and the rule ids it reported."""
    proc = subprocess.run(
        [str(BUF), *args, "--error-format=json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rules = {json.loads(line)["type"] for line in proc.stdout.splitlines() if line.strip()}
    return proc.returncode, rules


def _contract_copy(tmp_path: Path) -> Path:
    """protos/ and buf.yaml copied to tmp_path, so a test can break the copy."""
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    _proto_deps(tmp_path)
    _proto_deps(ROOT)
    return tmp_path


def test_buf_lint_enforces_comments_and_the_standard_rules(tmp_path):
    """Every element of the contract is documented and named the standard way: buf.yaml's
    rules must catch an undocumented message and an enum without an _UNSPECIFIED zero."""
    root = _contract_copy(tmp_path)
    proto = root / "protos" / "zako" / "v1" / "executor.proto"
    proto.write_text(
        proto.read_text()
        + "\nmessage Undocumented {\n  // A field.\n  string name = 1;\n}\n"
        + "\n// Colour is documented but its zero value is misnamed.\nenum Colour {\n"
        + "  // Zero.\n  COLOUR_NONE = 0;\n}\n"
    )
    code, rules = _buf_json(["lint"], root)
    assert code != 0
    assert {"COMMENT_MESSAGE", "ENUM_ZERO_VALUE_SUFFIX"} <= rules, rules


def test_buf_breaking_catches_a_deleted_field(tmp_path):
    """`make lint` runs buf breaking against the last release; the rules it uses must
    refuse a change that breaks clients already built against the contract."""
    root = _contract_copy(tmp_path)
    proto = root / "protos" / "zako" / "v1" / "executor.proto"
    text = proto.read_text()
    field = "  bool isolate_reuse = 8;\n"
    assert field in text
    proto.write_text(text.replace(field, ""))
    code, rules = _buf_json(["breaking", "--against", str(ROOT)], root)
    assert code != 0
    assert "FIELD_NO_DELETE" in rules, rules
    # The same comparison of the untouched contract passes: the failure above is the edit.
    assert _buf_json(["breaking", "--against", str(ROOT)], ROOT) == (0, set())
