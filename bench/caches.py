"""Issue 15's targets: what the content-addressed store, the workers' code cache and the
action cache buy, each against a baseline measured in the same run.

  (a) `ts.transpileModule` of a small file, repeated through Zako with the npm
      `typescript` package as the task's module tree (`cache="skip"`, so the action cache
      does not answer and the task really runs), against the same call repeated in one
      warm Node process (bench/nodejs/transpile_warm.js): per-call p50. And the bytes the
      client sends per repeated call, counted on the wire by a relay (bench/wire.py),
      against the task's own input.
  (b) a repeated lodash task against a repeated trivial task, on the same server.
  (c) an action-cache hit (a hermetic task repeated, unary Run) against the unary echo.
  (d) the CAS under a load of distinct blobs: a server with a small --cas-bytes, more
      distinct blobs uploaded than fit; the store's bytes never exceed its capacity and
      it evicts; a task whose tree was evicted still runs (the SDK uploads it again).

The npm trees come from tests/npmtrees.py (pinned, cached under ~/.cache/zako-tests/npm);
when npm cannot install them, (a) and (b) report `skipped` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc

from bench.common import (
    ROOT,
    CpuMeter,
    Load,
    ServerProcess,
    bench_server_argv,
    closed_loop,
    measured,
    percentile,
    zako_argv,
)
from bench.params import Params
from bench.payloads import TRIVIAL_SOURCE, messages
from bench.scenarios import sdk_client
from bench.servers import ECHO_SERVICE
from bench.wire import ByteRelay
from zako_sdk import AsyncClient
from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_sdk.trees import ModuleTree

TS_SPEC = "typescript@5.8.3"
LODASH_SPEC = "lodash@4.17.21"
NODE_SCRIPT = ROOT / "bench" / "nodejs" / "transpile_warm.js"

# The same call as NODE_SCRIPT's.
TS_ENTRY = (
    "const ts = require('typescript');\n"
    "module.exports = (text) => ts.transpileModule(text, { compilerOptions: "
    "{ module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 } }).outputText;\n"
)
# A small file as a build transpiles thousands of: types, an enum, a generic class.
SMALL_TS = """import { readFile } from "node:fs/promises";

export enum Level { Debug, Info, Warn, Error }

export interface Entry<T = unknown> {
  readonly at: number;
  level: Level;
  message: string;
  data?: T;
}

export class Journal<T> {
  private entries: Entry<T>[] = [];
  constructor(private readonly limit: number = 100) {}

  add(level: Level, message: string, data?: T): this {
    this.entries.push({ at: this.entries.length, level, message, data });
    if (this.entries.length > this.limit) this.entries.shift();
    return this;
  }

  above(level: Level): Entry<T>[] {
    return this.entries.filter((e) => e.level >= level);
  }
}

export async function load(path: string): Promise<Journal<string>> {
  const journal = new Journal<string>();
  for (const line of (await readFile(path, "utf8")).split("\\n")) {
    journal.add(Level.Info, line);
  }
  return journal;
}
"""
LODASH_ENTRY = (
    "const _ = require('lodash');\n"
    "module.exports = (cfg) => _.mapValues(_.groupBy(cfg.items, 'kind'), "
    "(xs) => _.sumBy(xs, 'n'));\n"
)
HIT_SOURCE = "module.exports = (x) => ({ doubled: x * 2 })"
IDLE_S = 2.5  # longer than a worker's idle time before it collects garbage (1 s)
FRESH_CALLS = 3  # TypeScript calls in a new isolate (the cost of a retirement)


class TreesUnavailable(RuntimeError):
    """npm could not install a pinned tree (no npm, no registry)."""


def npm_tree(spec: str) -> Path:
    """The installed tree (holding node_modules/) of one pinned package."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import npmtrees
    finally:
        sys.path.remove(str(ROOT / "tests"))
    if not npmtrees.node_available():
        raise TreesUnavailable("node/npm not found on PATH")
    try:
        return Path(npmtrees.install(spec))
    except (subprocess.SubprocessError, OSError) as exc:
        raise TreesUnavailable(f"npm install {spec} failed: {exc}") from exc


async def _stats(target: str) -> pb.StatsResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        return await pb_grpc.ExecutorStub(channel).Stats(pb.StatsRequest(), timeout=30)


def _meter(server: ServerProcess) -> CpuMeter:
    return CpuMeter(
        {"client": os.getpid(), "server": server.pid}, children_of={"workers": server.pid}
    )


# ---- (a) TypeScript -------------------------------------------------------------------------


def node_transpile(tree: Path, calls: int, seconds: float, fresh: bool = False) -> dict[str, Any]:
    """The warm-Node baseline: per-call figures from one Node process (`fresh`: a new
    typescript instance per call, the hermetic rule Zako's tasks follow)."""
    node = shutil.which("node")
    if node is None:
        raise TreesUnavailable("node not found on PATH")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(SMALL_TS, handle)
        handle.flush()
        proc = subprocess.run(
            [
                node,
                str(NODE_SCRIPT),
                str(tree),
                handle.name,
                str(calls),
                str(seconds),
                "fresh" if fresh else "warm",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=True,
        )
    data = json.loads(proc.stdout)
    calls_ms = data.pop("calls")
    data.update(
        count=len(calls_ms),
        p50_ms=percentile(calls_ms, 50),
        p99_ms=percentile(calls_ms, 99),
        mean_ms=sum(calls_ms) / max(len(calls_ms), 1),
    )
    return data


async def transpile(p: Params, server: ServerProcess, tree_dir: Path) -> dict[str, Any]:
    node = await asyncio.to_thread(node_transpile, tree_dir, p.node_calls, p.cache_seconds)
    expected = json.dumps(node.pop("output"))
    node_fresh = await asyncio.to_thread(
        node_transpile, tree_dir, p.node_calls, p.cache_seconds, True
    )
    if json.dumps(node_fresh.pop("output")) != expected:
        raise AssertionError("a fresh typescript instance transpiled differently in Node")
    tree = await asyncio.to_thread(ModuleTree.of, tree_dir)
    input_bytes = len(json.dumps(SMALL_TS).encode())

    async def call(client: AsyncClient, fresh: bool = False) -> None:
        result = await client.run(
            TS_ENTRY,
            modules=tree,
            input=SMALL_TS,
            cache="skip",
            timeout=120,
            fresh_isolate=fresh,
        )
        if result.value_json != expected:
            raise AssertionError(f"transpiled text differs from Node's: {result.value_json[:200]}")

    out: dict[str, Any] = {"node": node, "node_fresh": node_fresh, "input_bytes": input_bytes}
    # On the wire, through the relay: the first call (uploads the tree), then repeats.
    async with ByteRelay(server.target) as relay, sdk_client(relay.target, timeout=120) as wired:
        t0 = time.perf_counter()
        await call(wired)
        out["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        out["first_call_bytes_up"] = relay.up
        before, stats0 = relay.up, await _stats(server.target)
        repeats = await closed_loop(
            "wire", lambda _: call(wired), count=p.wire_calls, concurrency=1, seconds=60
        )
        stats1 = await _stats(server.target)
        out["wire_calls"] = repeats.completed
        out["bytes_up_per_call"] = (relay.up - before) / max(repeats.completed, 1)
        out["cas_uploaded_bytes_during_repeats"] = (
            stats1.cas.uploaded_bytes - stats0.cas.uploaded_bytes
        )
        if repeats.errors:
            raise RuntimeError(f"TypeScript calls failed: {repeats.first_error}")
    async with sdk_client(server.target, timeout=120) as client:
        await call(client)
        stats0 = await _stats(server.target)
        out["load"] = await measured(
            closed_loop(
                f"zako, ts.transpileModule ({TS_SPEC}), repeated",
                lambda _: call(client),
                count=p.ts_calls,
                concurrency=1,
                seconds=p.cache_seconds,
            ),
            _meter(server),
        )
        stats1 = await _stats(server.target)
        # A worker collects its isolates' garbage after 1 s idle; what V8 compiled
        # should survive it (issue 15 saw the first-compile cost paid again).
        await asyncio.sleep(IDLE_S)
        t0 = time.perf_counter()
        await call(client)
        out["after_idle_ms"] = (time.perf_counter() - t0) * 1e3
        # What an isolate's retirement costs the next task: a new isolate gets the texts
        # from the worker's store (no transfer) but compiles them again.
        fresh_ms = []
        for _ in range(FRESH_CALLS):
            t0 = time.perf_counter()
            await call(client, fresh=True)
            fresh_ms.append((time.perf_counter() - t0) * 1e3)
        out["fresh_isolate_ms"] = percentile(fresh_ms, 50)
    cc0, cc1 = stats0.code_cache, stats1.code_cache
    out["code_cache"] = {
        field: getattr(cc1, field) - getattr(cc0, field)
        for field in (
            "source_hits",
            "source_misses",
            "source_bytes_sent",
            "compiled_hits",
            "compiled_misses",
        )
    }
    return out


# ---- (b) lodash, (c) action-cache hits ------------------------------------------------------


async def lodash(
    p: Params, server: ServerProcess, client: AsyncClient, tree_dir: Path
) -> dict[str, Load]:
    tree = await asyncio.to_thread(ModuleTree.of, tree_dir)

    async def lodash_op(i: int) -> None:
        items = [{"kind": "ab"[k % 2], "n": k + i} for k in range(6)]
        result = await client.run(LODASH_ENTRY, modules=tree, input={"items": items}, cache="skip")
        want = {"a": sum(k + i for k in range(0, 6, 2)), "b": sum(k + i for k in range(1, 6, 2))}
        if json.loads(result.value_json) != want:
            raise AssertionError(f"lodash task answered {result.value_json}")

    async def trivial_op(i: int) -> None:
        result = await client.run(TRIVIAL_SOURCE, input=i, cache="skip")
        if result.value_json != str(i + 1):
            raise AssertionError(f"trivial task answered {result.value_json}")

    loads: dict[str, Load] = {}
    for key, name, op in (
        ("lodash", f"zako, lodash task ({LODASH_SPEC}), repeated", lodash_op),
        ("trivial", "zako, trivial task, repeated", trivial_op),
    ):
        await closed_loop("warmup", op, count=3, concurrency=1, seconds=60)
        loads[key] = await measured(
            closed_loop(name, op, count=p.lodash_calls, concurrency=1, seconds=p.cache_seconds),
            _meter(server),
        )
    return loads


async def action_hits(p: Params, client: AsyncClient) -> Load:
    async def op(_: int) -> None:
        result = await client.run_unary(HIT_SOURCE, input=21)
        if not result.cached or result.value_json != '{"doubled":42}':
            raise AssertionError(f"not an action-cache hit: {result.value_json} {result.cached}")

    await client.run_unary(HIT_SOURCE, input=21)  # the miss that fills the cache
    await closed_loop("warmup", op, count=p.warmup, concurrency=1, seconds=10)
    return await closed_loop(
        "zako, action-cache hit, unary Run, sequential",
        op,
        count=p.unary_count,
        concurrency=1,
        seconds=p.unary_seconds,
    )


async def echo_unary(p: Params) -> Load:
    """The unary echo (bench/servers.py), measured beside the hits it is compared with."""
    msgs = messages()
    async with (
        ServerProcess(bench_server_argv("echo"), "echo server") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        unary = channel.unary_unary(f"/{ECHO_SERVICE}/Unary")

        async def op(_: int) -> None:
            await unary(msgs.run_request, timeout=30)

        await closed_loop("warmup", op, count=p.warmup, concurrency=1, seconds=5)
        return await closed_loop(
            "echo, unary, sequential",
            op,
            count=p.unary_count,
            concurrency=1,
            seconds=p.unary_seconds,
        )


# ---- (d) the CAS's budget -------------------------------------------------------------------


async def cas_budget(p: Params) -> dict[str, Any]:
    """Upload `cas_blobs` distinct blobs into a store of `cas_capacity` bytes, reading
    its Stats after every batch; then run a task whose tree the flood evicted."""
    capacity, size = p.cas_capacity, p.cas_blob_bytes
    argv = zako_argv("--cas-bytes", str(capacity), "--max-blob-bytes", str(size * 4))
    out: dict[str, Any] = {"capacity_bytes": capacity, "blob_bytes": size}
    async with (
        ServerProcess(argv, "zako server (small CAS)") as server,
        AsyncClient(server.target, timeout=60) as client,
    ):
        # One client throughout: it remembers having uploaded this tree, so after the
        # flood it sends the task by digest, the server refuses it naming the evicted
        # blobs, and the SDK uploads them again and resubmits.
        modules = {"lib/answer.js": "module.exports = 41;\n"}
        entry = "module.exports = () => require('./lib/answer.js') + 1"
        first = await client.run(entry, modules=modules)
        rss0 = server.rss()
        observed: list[int] = []
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.ExecutorStub(channel)
            sent = 0
            t0 = time.perf_counter()
            while sent < p.cas_blobs:
                batch = []
                for _ in range(min(8, p.cas_blobs - sent)):
                    data = os.urandom(size // 2).hex().encode()
                    digest = cas_pb2.Digest(
                        hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
                    )
                    batch.append(cas_pb2.BatchUpdateBlobsRequest.Request(digest=digest, data=data))
                    sent += 1
                reply = await stub.BatchUpdateBlobs(
                    cas_pb2.BatchUpdateBlobsRequest(requests=batch), timeout=30
                )
                bad = [r for r in reply.responses if r.status.code != 0]
                if bad:
                    raise RuntimeError(f"upload refused: {bad[0].status.message}")
                observed.append((await stub.Stats(pb.StatsRequest(), timeout=30)).cas.bytes)
            out["upload_s"] = time.perf_counter() - t0
            final = (await stub.Stats(pb.StatsRequest(), timeout=30)).cas
            tree_blobs = [d.to_proto() for d, _ in ModuleTree.of(modules).blobs()]
            missing = await stub.FindMissingBlobs(
                cas_pb2.FindMissingBlobsRequest(blob_digests=tree_blobs), timeout=30
            )
        out.update(
            uploaded=sent,
            uploaded_bytes=sent * size,
            max_bytes=max(observed, default=0),
            final_bytes=final.bytes,
            final_blobs=final.blobs,
            reported_capacity=final.capacity_bytes,
            evictions=final.evictions,
            server_rss_growth=server.rss() - rss0,
        )
        again = await client.run(entry, modules=modules)
        after = (await _stats(server.target)).cas
        out["after_eviction"] = {
            "value": again.value_json,
            "first_value": first.value_json,
            "tree_blobs": len(tree_blobs),
            "evicted_before_rerun": len(missing.missing_blob_digests),
            "missing_rejections": after.missing_rejections - final.missing_rejections,
        }
        if again.value_json != "42" or first.value_json != "42":
            raise AssertionError(f"task after eviction answered {again.value_json}")
    return out


# ---- the section ----------------------------------------------------------------------------


async def caches(p: Params) -> dict[str, Any]:
    out: dict[str, Any] = {"spec": {"typescript": TS_SPEC, "lodash": LODASH_SPEC}}
    try:
        ts_dir, lodash_dir = npm_tree(TS_SPEC), npm_tree(LODASH_SPEC)
    except TreesUnavailable as exc:
        out["skipped"] = str(exc)
        ts_dir = lodash_dir = None
    errors: dict[str, str] = {}

    async def part(key: str, coro: Awaitable[Any]) -> None:
        """One measurement; its failure is reported, and the others still run."""
        try:
            out[key] = await coro
        except Exception as exc:
            errors[key] = f"{type(exc).__name__}: {exc}"[:500]

    async with ServerProcess(zako_argv(), "zako server") as server:
        out["banner"] = server.banner
        async with sdk_client(server.target, timeout=60) as client:
            if ts_dir is not None and lodash_dir is not None:
                await part("transpile", transpile(p, server, ts_dir))
                await part("lodash", lodash(p, server, client, lodash_dir))
            await part("hits", action_hits(p, client))
    await part("echo_unary", echo_unary(p))
    await part("cas", cas_budget(p))
    if errors:
        out["errors"] = errors
    return out


def caches_loads(section: dict[str, Any] | None) -> dict[str, Load]:
    """Every load of the section (for the run's error check and the JSON)."""
    section = section or {}
    loads: dict[str, Load] = {}
    if "transpile" in section:
        loads["ts"] = section["transpile"]["load"]
    for key, load in (section.get("lodash") or {}).items():
        loads[key] = load
    for key in ("hits", "echo_unary"):
        if key in section:
            loads[key] = section[key]
    return loads
