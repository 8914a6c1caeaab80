"""Zako benchmarks: `python -m bench.run [--quick] [--json PATH]` (or `make bench`).

Measures, in one run on this machine (issue 7):
  1. trivial tasks (`module.exports = (x) => x + 1`) through the full stack — SDK, one
     Submit stream, admission, pool, V8 — and on 8 streams, and through unary Run;
  2. baselines: (a) a bare grpc.aio echo service moving the same message bytes with the
     same client shape, (b) mini-racer eval in this process (fresh and reused instance),
     (c) a naive unary server with a fresh MiniRacer per request in a thread pool;
  3. ~50 ms CPU-bound tasks on 1, 2, … workers (up to the effective CPUs);
  4. RSS of the server and of each idle worker; server RSS after N1 vs N2 tasks;
  5. cold start: exec of `python -m zako_server` to health SERVING;
  6. overload: twice the capacity offered to one worker behind a small queue;
  7. (issue 16) Zako against the Node.js peer (bench/peer.py: @grpc/grpc-js, Piscina,
     node:vm; a fresh and a reused context), 1 worker each, under the same loads;
  8. (issue 15) the caches: a repeated TypeScript transpile and lodash task, an action
     cache hit, the CAS under a load of distinct blobs (bench/caches.py).
Then each target of the issues as a row: measured ratio, target, PASS/MISS.

Servers are subprocesses on 127.0.0.1 port 0; every loop is bounded in count and time.
Results: a Markdown table on stdout, JSON in bench/results/latest.json (latest-quick.json
for --quick) and in --json PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baselines, caches, flood, instructions, peer, scenarios
from bench.common import ROOT, machine_quiet
from bench.machine import machine_info
from bench.params import Params
from bench.payloads import messages
from bench.report import all_loads, floor_targets, jsonable, render, targets

RESULTS_DIR = ROOT / "bench" / "results"
# The leak check runs last: it is the longest, and RSS hardly depends on other load.
SECTIONS = (
    "echo",
    "inprocess",
    "naive",
    "floor",
    "zako",
    "instructions",
    "cpu",
    "peer",
    "caches",
    "cold",
    "overload",
    "flood",
    "memory",
)
QUIET_CORES = 0.15
# Left out of a --quick run unless --only names it: even a few tasks under callgrind
# take minutes (the smoke test runs it on its own).
QUICK_SKIPS = ("instructions",)


# ---- running ----------------------------------------------------------------------------


async def run_sections(
    params: Params,
    only: Sequence[str],
    machine: dict[str, Any],
    log: Callable[[str], None],
    profile_dir: Path | None = None,
    wait_quiet: float = 0.0,
) -> tuple[dict[str, Any], dict[str, str]]:
    msgs = messages()
    cpus = max(1, math.floor(machine["effective_cpus"]))
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    steps: dict[str, Callable[[], Any]] = {
        "echo": lambda: baselines.echo_baseline(params, msgs),
        "inprocess": lambda: asyncio.to_thread(baselines.inprocess_baseline, params),
        "naive": lambda: baselines.naive_baseline(params),
        "floor": lambda: baselines.floor_baseline(params, msgs),
        "zako": lambda: scenarios.zako_trivial(params, cpus, profile_dir),
        "instructions": lambda: instructions.instruction_counts(params),
        "cpu": lambda: scenarios.zako_cpu_scaling(params, machine["effective_cpus"]),
        "memory": lambda: scenarios.zako_memory(params, cpus),
        "cold": lambda: scenarios.cold_start(params),
        "overload": lambda: scenarios.overload(params),
        "flood": lambda: flood.log_flood(params),
        "peer": lambda: peer.peer_comparison(params),
        "caches": lambda: caches.caches(params),
    }
    for name in SECTIONS:
        if name not in only:
            continue
        waited = time.perf_counter()
        await _wait_quiet(wait_quiet, log)
        wait_quiet = max(wait_quiet - (time.perf_counter() - waited), 0.0)
        log(f"[bench] {name} …")
        t0 = time.perf_counter()
        try:
            results[name] = await steps[name]()
            failed = [load for load in all_loads({name: results[name]}) if load.errors]
            own = (
                results[name].get("errors")
                if name in {"memory", "flood", "caches", "instructions"}
                else None
            )
            if failed or own:
                parts = [
                    f"{load.name}: {load.errors} error(s), first: {load.first_error[:200]}"
                    for load in failed
                ]
                if own:
                    parts.append(
                        f"{own}"
                        if name in {"caches", "instructions"}
                        else f"{own} task(s) failed in the leak check"
                    )
                errors[name] = "; ".join(parts)
                log(f"[bench] {name}: {errors[name]}")
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"[bench] {name} FAILED: {errors[name]}\n{traceback.format_exc()}")
        log(f"[bench] {name} took {time.perf_counter() - t0:.1f} s")
    return results, errors


async def _wait_quiet(limit: float, log: Callable[[str], None]) -> None:
    """Wait (at most `limit` seconds) until other processes leave the CPUs idle."""
    deadline = time.perf_counter() + limit
    while limit > 0:
        other = await machine_quiet(1.0)
        if other < QUIET_CORES:
            return
        if time.perf_counter() >= deadline:
            log(f"[bench] machine still busy ({other:.2f} cores used by others); going on")
            return
        log(f"[bench] waiting for a quiet machine ({other:.2f} cores used by others)")


# ---- entry point --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts (a smoke run: checks the harness, not the figures)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the JSON results here"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help="where latest.json (full) or latest-quick.json goes "
        "(default: bench/results, which git ignores)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated sections to run (default: all of {SECTIONS}; with "
        "--quick all but instructions, which takes minutes under valgrind)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        dest="py_spy",
        help="record py-spy profiles (collapsed stacks) of the server and its "
        "workers during the one-stream and unary Zako runs into DIR",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        metavar="SECONDS",
        help="before each section wait for other processes to leave the CPUs "
        "idle, SECONDS in all (default: 60 in full mode, 0 with --quick)",
    )
    parser.add_argument(
        "--leak-seconds",
        type=float,
        default=150.0,
        help="full mode: time bound of the N1→N2 leak check (default 150)",
    )
    args = parser.parse_args(argv)
    if args.only is None:
        slow = QUICK_SKIPS if args.quick else ()
        args.only = ",".join(s for s in SECTIONS if s not in slow)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


async def amain(args: argparse.Namespace) -> int:
    params = Params.quick_mode() if args.quick else Params.full_mode(args.leak_seconds)
    only = args.only.split(",")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    machine = machine_info()
    other_before = await machine_quiet(0.5 if args.quick else 2.0)
    if other_before > 0.25:
        log(f"[bench] WARNING: other processes keep {other_before:.2f} cores busy")
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0 if args.quick else 60)
    results, errors = await run_sections(params, only, machine, log, args.py_spy, wait_quiet)
    other_loads = [
        load.other_cores for load in all_loads(results) if not math.isnan(load.other_cores)
    ]
    report: dict[str, Any] = {
        "command": "python -m bench.run" + (" --quick" if args.quick else ""),
        "argv": sys.argv[1:],
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t0,
        "machine": machine,
        "params": asdict(params),
        "message_bytes": messages().sizes(),
        "sections": list(only),
        "errors": errors,
        "other_load_before": other_before,
        "other_load_max": max([other_before, *other_loads]),
    }
    tgts = targets(results, params)
    floor_tgts = floor_targets(results)
    table = render(report, results, tgts, floor_tgts)
    print(table, flush=True)
    zako = results.get("zako")
    report["results"] = jsonable(
        {**results, "zako": zako[0] if zako else None, "zako_info": zako[1] if zako else None}
    )
    report["targets"] = [t.to_json() for t in tgts]
    report["floor_targets"] = [t.to_json() for t in floor_tgts]
    report["table"] = table
    text = json.dumps(report, indent=2, sort_keys=False, default=str)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    latest = "latest-quick.json" if args.quick else "latest.json"
    (args.results_dir / latest).write_text(text + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
