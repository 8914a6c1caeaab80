"""The transform stage (issue 13): files per second, the cost of a cache hit, and a
TypeScript task's time first and repeated. `python -m bench.transform [--quick]`.

Measured on real npm trees installed by tests/npmtrees.py (cached under
~/.cache/zako-tests/npm), so the files are what build tools actually load:
  1. cold transforms: a fresh TransformPool (empty cache) prepares a tree — files/s with
     1 process and with the default count (lodash: ~1,050 CommonJS files, lexed only;
     marked: ES modules; a generated TypeScript project: sucrase's full path);
  2. cache hits: the same tree again — µs per file (a SHA-256 and a dict lookup);
  3. a TypeScript task through a real server: the first run (transforms its files) and
     the same task repeated (cache hits), p50 of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import npmtrees

from bench.common import ServerProcess, zako_argv
from zako_server.server.transforms import TransformPool, default_processes


def typescript_project(files: int) -> dict[str, str]:
    """A TypeScript tree: `files` modules with interfaces, generics, enums and imports."""
    tree: dict[str, str] = {}
    for i in range(files):
        dep = f"import {{ f{i - 1} }} from './m{i - 1}';\n" if i else ""
        tree[f"src/m{i}.ts"] = (
            f"{dep}export interface Shape{i}<T> {{ id: T; tags: readonly string[] }}\n"
            f"export enum Kind{i} {{ A = 'a{i}', B = 'b{i}' }}\n"
            f"export function f{i}<T extends number>(x: T): number {{\n"
            f"  const s: Shape{i}<T> = {{ id: x, tags: ['x'] }};\n"
            f"  const prev: number = {f'f{i - 1}(x)' if i else '0'};\n"
            f"  return s.id + prev + (Kind{i}.A as string).length;\n"
            "}\n"
        )
    tree["main.ts"] = (
        f"import {{ f{files - 1} }} from './src/m{files - 1}';\n"
        "export default (input: { n: number }): number => "
        f"f{files - 1}(input.n as number);\n"
    )
    return tree


async def stage(tree: dict[str, str], processes: int, rounds: int) -> dict[str, Any]:
    """Cold files/s with `processes` processes, then the per-file cost of cache hits."""
    pool = TransformPool(processes)
    try:
        await pool.start()
        t0 = time.perf_counter()
        await pool.prepare(tree)
        cold = time.perf_counter() - t0
        hits = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await pool.prepare(tree)
            hits.append(time.perf_counter() - t0)
        transformed = pool.stats.files_transformed
    finally:
        await pool.close()
    hit = statistics.median(hits)
    return {
        "files": transformed,
        "processes": processes,
        "cold_s": round(cold, 4),
        "files_per_s": round(transformed / cold, 1),
        "hit_us_per_file": round(hit / max(transformed, 1) * 1e6, 2),
        "hit_ms_per_tree": round(hit * 1000, 3),
    }


async def ts_task(repeats: int) -> dict[str, Any]:
    """A TypeScript task (40 modules) through a real server: first run vs repeats."""
    import grpc
    from google.protobuf.duration_pb2 import Duration

    from zako_sdk.proto.zako.v1 import executor_pb2 as pb
    from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

    tree = typescript_project(40)
    task = pb.Task(
        source=tree["main.ts"],
        entry_name="main.ts",
        modules=[pb.Module(name=k, source=v) for k, v in tree.items() if k != "main.ts"],
        input_json=json.dumps({"n": 1}),
        timeout=Duration(seconds=30),
        cache=pb.CACHE_POLICY_SKIP,  # repeats must run (transform cache), not hit the action cache
    )
    server = await ServerProcess(zako_argv(), "zako").start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.ExecutorStub(channel)
            times = []
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                response = await stub.Run(pb.RunRequest(task=task), timeout=60)
                times.append(time.perf_counter() - t0)
                if response.WhichOneof("outcome") != "completed":
                    raise RuntimeError(f"the TypeScript task failed: {response}")
    finally:
        await server.stop()
    return {
        "modules": len(tree),
        "first_ms": round(times[0] * 1000, 2),
        "repeat_p50_ms": round(statistics.median(times[1:]) * 1000, 2),
    }


async def bench(quick: bool = False) -> dict[str, Any]:
    rounds = 5 if quick else 20
    trees = {
        "lodash (CommonJS)": npmtrees.install_and_pack("lodash@4.17.21"),
        "marked (ES modules)": npmtrees.install_and_pack("marked@15.0.12"),
        "TypeScript project": typescript_project(200),
    }
    results: dict[str, Any] = {"stage": {}}
    counts = sorted({1, default_processes()})
    for name, tree in trees.items():
        results["stage"][name] = [await stage(tree, n, rounds) for n in counts]
    results["typescript_task"] = await ts_task(10 if quick else 50)
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        "| tree | processes | files | cold s | files/s | hit µs/file | hit ms/tree |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in results["stage"].items():
        for r in rows:
            lines.append(
                f"| {name} | {r['processes']} | {r['files']} | {r['cold_s']} | "
                f"{r['files_per_s']} | {r['hit_us_per_file']} | {r['hit_ms_per_tree']} |"
            )
    t = results["typescript_task"]
    lines.append("")
    lines.append(
        f"TypeScript task ({t['modules']} modules) through a server: first run "
        f"{t['first_ms']} ms, repeated p50 {t['repeat_p50_ms']} ms"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args.quick))
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
