"""Issue 15's bench parts at tiny sizes: the byte-counting relay, the warm-Node baseline
and the CAS budget run against real servers, and each asserts what it measured is real
(bytes counted, Node's output, the store within its capacity and evicting), never a time.
"""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from bench import caches
from bench.common import ServerProcess, bench_server_argv
from bench.params import MB, Params
from bench.payloads import messages
from bench.servers import ECHO_SERVICE
from bench.wire import ByteRelay


async def test_relay_counts_the_bytes_each_way() -> None:
    msgs = messages()
    async with (
        ServerProcess(bench_server_argv("echo"), "echo server") as server,
        ByteRelay(server.target) as relay,
        grpc.aio.insecure_channel(relay.target) as channel,
    ):
        unary = channel.unary_unary(f"/{ECHO_SERVICE}/Unary")
        for _ in range(5):
            answer = await unary(msgs.run_request, timeout=10)
        up, down = relay.up, relay.down
        assert up >= 5 * len(msgs.run_request) and down >= 5 * len(answer)
        await unary(msgs.run_request, timeout=10)
        assert relay.up - up >= len(msgs.run_request)  # counted per call, not once


def test_warm_node_baseline_transpiles_like_typescript() -> None:
    try:
        tree = caches.npm_tree(caches.TS_SPEC)
    except caches.TreesUnavailable as exc:
        pytest.skip(f"npm cannot install {caches.TS_SPEC}: {exc}")
    node = caches.node_transpile(tree, calls=3, seconds=10)
    assert node["version"] == caches.TS_SPEC.split("@")[1]
    assert node["count"] == 3 and node["p50_ms"] > 0
    assert "var Level;" in node["output"] and "interface" not in node["output"]
    assert node["fresh"] is False


def test_node_baseline_with_a_fresh_instance_per_call_gives_the_same_text() -> None:
    try:
        tree = caches.npm_tree(caches.TS_SPEC)
    except caches.TreesUnavailable as exc:
        pytest.skip(f"npm cannot install {caches.TS_SPEC}: {exc}")
    warm = caches.node_transpile(tree, calls=3, seconds=10)
    fresh = caches.node_transpile(tree, calls=3, seconds=10, fresh=True)
    assert fresh["fresh"] is True and fresh["count"] == 3
    assert fresh["output"] == warm["output"]


async def test_cas_stays_within_its_capacity_and_a_task_after_eviction_runs() -> None:
    p = dataclasses.replace(
        Params.quick_mode(), cas_capacity=4 * MB, cas_blob_bytes=64 << 10, cas_blobs=80
    )
    cas = await caches.cas_budget(p)
    assert cas["uploaded"] == 80 and cas["reported_capacity"] == 4 * MB
    assert 0 < cas["max_bytes"] <= cas["capacity_bytes"]
    assert cas["evictions"] >= 80 - (4 * MB) // (64 << 10)
    after = cas["after_eviction"]
    assert after["first_value"] == after["value"] == "42"
    assert after["evicted_before_rerun"] > 0  # the flood did evict the task's tree
