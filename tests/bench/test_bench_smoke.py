"""Smoke run of the benchmark harness (`python -m bench.run --quick`), so it never rots.

Benchmarks are not tests: nothing here asserts a figure or a timing, only that the run
finished, measured every section, printed every target row and wrote valid JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.instructions import missing_tools

ROOT = Path(__file__).resolve().parents[2]

SECTIONS = {
    "echo",
    "inprocess",
    "naive",
    "floor",
    "zako",
    "cpu",
    "peer",
    "caches",
    "memory",
    "cold",
    "overload",
    "flood",
}
LOADS = {
    "echo": {"echo_stream", "echo_stream3", "echo_streams8", "echo_unary", "echo_unary_c8"},
    "inprocess": {"inprocess_fresh", "inprocess_reused"},
    "naive": {"naive_unary", "naive_unary_c8"},
    "floor": {"floor_stream", "floor_unary"},
    "zako": {
        "zako_stream",
        "zako_streams8",
        "zako_unary",
        "zako_unary_paced",
        "zako_unary_c8",
        "zako_stream_fresh",
        "zako_unary_fresh",
    },
}
FLOOR_TARGETS = {
    "i16_server_worker_cpu",
    "i16_stream_vs_echo",
    "i16_unary_vs_echo",
    "i16_client_cpu",
    "i16_cpu_vs_reused_peer",
}
TARGETS = {
    "stream_vs_echo",
    "unary_vs_echo",
    "vs_naive",
    "cpu_scaling",
    "worker_rss",
    "server_rss_growth",
    "log_flood_rss",
    "cold_start",
    "i16_server_worker_cpu",
    "i16_stream_vs_echo",
    "i16_unary_vs_echo",
    "i16_client_cpu",
    "i16_stream_vs_peer",
    "i16_unary_vs_peer",
    "i16_cpu_bound_vs_peer",
    "i16_cpu_vs_reused_peer",
    "i15_ts_vs_node",
    "i15_ts_bytes",
    "i15_lodash_vs_trivial",
    "i15_hit_vs_echo",
    "i15_cas_budget",
    "i15_cas_evicts",
}
TARGET_TITLES = [
    "Trivial tasks, one Submit stream vs echo",
    "Unary Run p50 vs echo unary p50",
    "Throughput vs naive design",
    "CPU-bound ~50 ms tasks, 2 workers vs 1",
    "Idle worker RSS",
    "Server RSS growth",
    "Log flood on a never-read Submit stream",
    "Cold start to SERVING",
    "Zako server + worker CPU per trivial task",
    "One-stream throughput vs the echo ceiling",
    "Unary p50 over echo's",
    "SDK client CPU per task",
    "Trivial tasks, one stream: Zako vs the fresh-context peer",
    "Unary Run p50: Zako vs the fresh-context peer",
    "~50 ms CPU-bound tasks: Zako vs the fresh-context peer",
    "CPU per trivial task (client + server + worker): Zako vs the reused-context peer",
    "ts.transpileModule repeated: per call vs warm Node",
    "Bytes sent per repeated TypeScript call vs its input",
    "Repeated lodash task vs a trivial task",
    "Action-cache hit p50 vs unary echo p50",
    "CAS bytes held (max) vs its capacity",
    "CAS evicts when distinct blobs exceed it",
]
PEER_SYSTEMS = {"zako", "peer_fresh", "peer_reused"}


def _bench(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m bench.run ARGS` in a session of its own: when the test ends first (its
    timeout, or pytest-timeout's), every server the harness started is killed with it,
    not left running (under valgrind, for minutes) beside the tests that follow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZAKO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _undecided(rows: list[dict[str, Any]], peer_skipped: bool, npm_skipped: bool) -> list[Any]:
    """The target rows (as in the JSON) with no PASS or MISS, but for those whose Node
    peer or npm trees this machine could not run (the table says so then)."""
    return [
        t
        for t in rows
        if t["status"] not in {"PASS", "MISS"}
        and not (peer_skipped and t["key"].endswith("_peer"))
        and not (npm_skipped and t["key"].startswith(("i15_ts", "i15_lodash")))
    ]


@pytest.mark.slow
def test_quick_run_measures_everything(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench(["--quick", "--json", str(out), "--results-dir", str(tmp_path / "results")], 300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for title in TARGET_TITLES:
        assert title in proc.stdout, f"missing target row {title!r}:\n{proc.stdout}"
    target_lines = [
        line for line in proc.stdout.splitlines() if any(title in line for title in TARGET_TITLES)
    ]
    assert len(target_lines) == len(TARGET_TITLES)
    # Rows against the Node peer have no figure only when the table says it was skipped.
    peer_skipped = "NODE PEER SKIPPED" in proc.stdout
    npm_skipped = "NPM TREES SKIPPED" in proc.stdout
    decided = [
        line
        for line in target_lines
        if not (peer_skipped and "peer" in line)
        and not (npm_skipped and any(w in line for w in ("TypeScript", "transpile", "lodash")))
    ]
    assert all(("PASS" in line) != ("MISS" in line) for line in decided), target_lines

    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert report["errors"] == {}
    assert set(report["sections"]) == SECTIONS
    machine = report["machine"]
    for key in ("cpu_count", "python", "grpcio", "mini_racer", "v8"):
        assert machine[key], key
    results = report["results"]
    for section, names in LOADS.items():
        loads = results[section] if section != "zako" else results["zako"]
        # zako_stream_nw (one stream on every CPU's worker) only where that is more
        # workers than the default.
        assert names <= set(loads) <= names | {"zako_stream_nw"}, section
        for name, load in loads.items():
            assert load["completed"] > 0 and load["errors"] == 0, (name, load)
            assert load["rate_per_s"] > 0 and load["p50_ms"] > 0, (name, load)
    assert set(results["cpu"]["runs"]) >= {"1", "2"}
    memory = results["memory"]
    assert memory["last"]["server"]["rss"] > 0 and memory["idle"]["workers"]
    assert memory["tasks_last"] > memory["tasks_first"] > 0
    assert results["cold"]["runs"] >= 1
    assert "Issue 16: Zako against the stack's floor" in proc.stdout
    # The same targets on the floor: every one that needs no peer has a verdict.
    assert "Issue 16: the targets measured on the stack's floor" in proc.stdout
    assert {t["key"] for t in report["floor_targets"]} == FLOOR_TARGETS
    assert not _undecided(report["floor_targets"], peer_skipped, npm_skipped)
    # Issue 16: Zako and the Node peer (both modes) under the same three loads, or Zako
    # alone and the reason, said in the table, when this machine cannot run the peer.
    peer = results["peer"]
    if "skipped" in peer:
        assert f"NODE PEER SKIPPED: {peer['skipped']}" in proc.stdout
        assert set(peer["systems"]) == {"zako"}
    else:
        assert set(peer["systems"]) == PEER_SYSTEMS
        assert "Node peer, one reused context per worker" in proc.stdout
    # No Zako figure was an action-cache hit: every task of those loads was distinct.
    assert results["zako_info"]["action_cache_hits"] == 0
    assert peer["systems"]["zako"]["action_cache_hits"] == 0
    for system in peer["systems"].values():
        assert set(system["loads"]) == {"stream", "unary", "cpu"}
        for name, load in system["loads"].items():
            assert load["completed"] > 0 and load["errors"] == 0, (name, load)
    overload = results["overload"]
    assert overload["sent"] == overload["accepted"] + overload["rejected"]
    assert overload["stuck"] == 0 and overload["other_outcomes"] == {}
    assert {t["key"] for t in report["targets"]} == TARGETS
    assert not _undecided(report["targets"], peer_skipped, npm_skipped)

    # Issue 15: every part measured (the npm rows only if npm could install the trees).
    caches = results["caches"]
    assert "errors" not in caches, caches.get("errors")
    assert caches["hits"]["completed"] > 0 and caches["echo_unary"]["completed"] > 0
    cas = caches["cas"]
    assert cas["max_bytes"] <= cas["capacity_bytes"] == cas["reported_capacity"]
    assert cas["evictions"] > 0 and cas["after_eviction"]["value"] == "42"
    if "skipped" in caches:
        assert "NPM TREES SKIPPED" in proc.stdout
    else:
        ts = caches["transpile"]
        assert ts["load"]["completed"] > 0 and ts["node"]["count"] > 0
        assert ts["node_fresh"]["count"] > 0 and ts["node_fresh"]["fresh"] is True
        assert ts["after_idle_ms"] > 0 and ts["fresh_isolate_ms"] > 0
        assert ts["bytes_up_per_call"] > 0 and ts["first_call_bytes_up"] > ts["bytes_up_per_call"]
        assert caches["lodash"]["lodash"]["completed"] > 0

    latest = tmp_path / "results" / "latest-quick.json"
    assert json.loads(latest.read_text())["started_at"] == report["started_at"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # three servers under valgrind, two loads each: ~4 minutes here
def test_instruction_counts_run_under_callgrind(tmp_path: Path) -> None:
    """The instructions section (left out of a --quick run: minutes under valgrind):
    every process of Zako, the floor and echo is counted, and the table says so."""
    if missing_tools() is not None:
        pytest.skip(f"bench/instructions.py needs valgrind: {missing_tools()}")
    out = tmp_path / "bench.json"
    proc = _bench(
        [
            *("--quick", "--only", "instructions", "--json", str(out)),
            *("--results-dir", str(tmp_path / "results")),
        ],
        900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["errors"] == {} and report["sections"] == ["instructions"]
    counts = report["results"]["instructions"]
    for kind in ("zako", "floor", "echo"):
        # Both loads ran on each server, and each was counted on its own.
        for load in (counts[kind], counts[kind]["unary"]):
            assert load["tasks"] > 0 and load["errors"] == 0, kind
            assert load["per_task"]["server"] > 0, kind
        # The task-running processes were found and counted: Zako's worker, the floor's
        # child (echo has none).
        for load in (counts[kind], counts[kind]["unary"]):
            assert (load["per_task"]["workers"] > 0) == (kind != "echo"), kind
    assert "Issue 16: instructions per trivial task under callgrind" in proc.stdout
    assert "server + workers, unary" in proc.stdout
