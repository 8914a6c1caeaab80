"""Server memory under a log flood that nobody reads (#12 item 2).

A client opens one Submit stream, sends tasks that each print 2^20 one-character lines
(1 MiB of `console.log('x')`: a million events before logs were bounded in lines and
coalesced), and reads nothing. The server's RSS is sampled while the stream sits
unread, then the client reads everything and every task must have its terminal event;
last, one unary Run of the same flood. Before the fix such a stream grew the server by
~890 B per event (2.79 GB with three tasks); the bound is +50 MB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psutil

from bench.common import ServerProcess, zako_argv
from bench.params import MB, Params
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

FLOOD_SOURCE = "for (let i = 0; i < (1 << 20); i++) console.log('x'); module.exports = 1"
RSS_BOUND_MB = 50.0
_TERMINAL = {"completed", "failed", "cancelled", "rejected"}
_SAMPLE_S = 0.25
# The tasks are identical: without this the action cache would run one and answer the
# rest from it (issue 15), and nothing would flood.
SKIP = pb.CACHE_POLICY_SKIP


def _rss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


async def _sample(pid: int, seconds: float) -> int:
    """The peak RSS of `pid` over `seconds` (bounded by time, sampled)."""
    peak, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, _rss(pid))
        await asyncio.sleep(_SAMPLE_S)
    return peak


async def log_flood(p: Params) -> dict[str, Any]:
    """Idle, peak-while-unread and after-drain server RSS for `tasks` flooding tasks."""
    tasks = 3 if p.quick else 10
    unread_s = 5.0 if p.quick else 30.0
    out: dict[str, Any] = {"tasks": tasks, "unread_seconds": unread_s, "bound_mb": RSS_BOUND_MB}
    async with ServerProcess(zako_argv(), "zako server") as server:
        await asyncio.sleep(1.0)
        out["idle_rss"] = _rss(server.pid)
        async with grpc.aio.insecure_channel(
            server.target, options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as channel:
            stub = pb_grpc.ExecutorStub(channel)

            async def requests() -> AsyncIterator[pb.SubmitRequest]:
                for i in range(tasks):
                    yield pb.SubmitRequest(
                        task=pb.Task(id=f"flood-{i}", source=FLOOD_SOURCE, cache=SKIP)
                    )

            call = stub.Submit(requests())
            out["peak_unread_rss"] = await _sample(server.pid, unread_s)
            ends: dict[str, str] = {}
            lines = events = 0
            read_deadline = time.monotonic() + 300
            async for event in call:
                kind = event.WhichOneof("event")
                events += 1
                if kind == "log":
                    lines += 1 + len(event.log.more)
                elif kind in _TERMINAL:
                    ends[event.task_id] = kind
                    if len(ends) == tasks:
                        break
                if time.monotonic() > read_deadline:
                    break
            out["events_read"] = events
            out["lines_read"] = lines
            out["completed"] = sum(kind == "completed" for kind in ends.values())
            out["after_drain_rss"] = _rss(server.pid)
            run = await stub.Run(
                pb.RunRequest(task=pb.Task(source=FLOOD_SOURCE, cache=SKIP)), timeout=120
            )
            out["run_lines"] = len(run.logs)
            out["run_logs_dropped"] = run.logs_dropped
            await asyncio.sleep(0.5)
            out["after_run_rss"] = _rss(server.pid)
    peak = max(out["peak_unread_rss"], out["after_drain_rss"], out["after_run_rss"])
    out["growth_mb"] = round((peak - out["idle_rss"]) / MB, 1)
    out["errors"] = tasks - out["completed"]
    return out


def render_flood(flood: dict[str, Any]) -> list[str]:
    """The report's lines for this section."""
    mb = MB
    return [
        f"Log flood, never read ({flood['tasks']} tasks x 2^20 lines on one Submit stream, "
        f"unread for {flood['unread_seconds']:g} s): server RSS idle "
        f"{flood['idle_rss'] / mb:.1f} MB, peak while unread "
        f"{flood['peak_unread_rss'] / mb:.1f} MB, after reading "
        f"{flood['after_drain_rss'] / mb:.1f} MB ({flood['events_read']:,} events, "
        f"{flood['lines_read']:,} lines, {flood['completed']}/{flood['tasks']} completed), "
        f"after one unary Run of the same flood {flood['after_run_rss'] / mb:.1f} MB "
        f"({flood['run_lines']:,} lines kept, {flood['run_logs_dropped']:,} dropped): "
        f"growth {flood['growth_mb']:g} MB (bound +{flood['bound_mb']:g} MB)",
        "",
    ]
