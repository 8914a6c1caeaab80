"""`zako stats`: the value objects and the table (pure, from hand-built messages), and
`--watch` on a real server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import sys

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from zako_sdk import _cli_commands
from zako_sdk._cli_args import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from zako_sdk._table import format_bytes, format_duration, render_cluster, render_stats
from zako_sdk.cli import main
from zako_sdk.errors import Unavailable
from zako_sdk.models import HeapUsage
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.stats import Histogram, Stats, TaskCounters, VersionInfo, WorkerStats, quantile


def _histogram(p50: float, p90: float, p99: float, count: int = 4) -> pb.Histogram:
    return pb.Histogram(
        bounds_seconds=[0.001, 0.01],
        counts=[1, 2, count - 3],
        count=count,
        sum_seconds=0.02,
        p50_seconds=p50,
        p90_seconds=p90,
        p99_seconds=p99,
    )


def sample_message() -> pb.StatsResponse:
    return pb.StatsResponse(
        time=Timestamp(seconds=1_800_000_000),
        uptime=Duration(seconds=3 * 3600 + 7 * 60),
        pool=pb.PoolStats(
            min_workers=1,
            max_workers=4,
            live=2,
            busy=1,
            idle=1,
            started_total=5,
            crashed_total=1,
            reclaimed_total=2,
            workers=[
                pb.WorkerStats(
                    worker_id="w1",
                    pid=4242,
                    state="busy",
                    tasks_run=17,
                    rss_bytes=75 * 2**20,
                    last_heap=pb.HeapUsage(used_bytes=512 * 1024, limit_bytes=256 * 2**20),
                ),
                pb.WorkerStats(worker_id="w2", pid=4343, state="idle"),
            ],
        ),
        queue=pb.QueueStats(
            depth=3,
            capacity=1024,
            running=1,
            depth_by_priority={-1: 1, 5: 2},
            queued_bytes=2048,
            capacity_bytes=2**28,
        ),
        tasks=pb.TaskCounters(
            accepted=20,
            completed=15,
            failed=3,
            cancelled=1,
            rejected=2,
            failed_by_reason={"TIMEOUT": 2, "JS_ERROR": 1},
            rejected_by_reason={"RESOURCE_EXHAUSTED": 2},
        ),
        versions=pb.VersionInfo(server="0.1.0", v8="14.4", python="3.11.7", protocol="zako.v1"),
        resources=[
            pb.ResourceStats(name="cpu", capacity=2000, in_use=500, queued_demand=250),
            pb.ResourceStats(name="memory", capacity=2**30, in_use=2**29),
        ],
        tenants=[pb.TenantStats(tenant="acme", running=1, queued=3, accepted=20, rejected=2)],
        queue_wait=_histogram(0.0005, 0.002, 0.0042),
        run_time=_histogram(0.0123, 0.25, 1.5),
        system=pb.SystemStats(
            effective_cpus=2,
            effective_memory_bytes=8 * 2**30,
            cpu_percent=37.5,
            memory_available_bytes=6 * 2**30,
            server_rss_bytes=60 * 2**20,
            load_average_1m=0.75,
        ),
    )


def sample() -> Stats:
    return Stats.from_proto(sample_message())


def test_stats_from_the_message_keeps_every_field_in_plain_python_types():
    stats = sample()
    assert stats.time == dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.timezone.utc)
    assert stats.uptime == 3 * 3600 + 7 * 60
    assert stats.pool.workers == (
        WorkerStats("w1", 4242, "busy", 17, 75 * 2**20, HeapUsage(512 * 1024, 0, 256 * 2**20)),
        WorkerStats("w2", 4343, "idle", 0, 0, None),  # unset message: None, not zeros
    )
    assert stats.queue.depth_by_priority == {-1: 1, 5: 2}
    assert stats.tasks == TaskCounters(
        20, 15, 3, 1, 2, {"TIMEOUT": 2, "JS_ERROR": 1}, {"RESOURCE_EXHAUSTED": 2}
    )
    assert stats.versions == VersionInfo("0.1.0", "14.4", "", "3.11.7", "zako.v1")
    assert [(r.name, r.capacity, r.in_use) for r in stats.resources] == [
        ("cpu", 2000, 500),
        ("memory", 2**30, 2**29),
    ]
    assert stats.run_time == Histogram((0.001, 0.01), (1, 2, 1), 4, 0.02, 0.0123, 0.25, 1.5)
    assert stats.run_time.mean_seconds == 0.005
    assert stats.system.load_average_1m == 0.75
    assert Stats.from_proto(pb.StatsResponse()) == Stats()


def test_stats_json_view_has_the_proto_field_paths():
    document = json.loads(json.dumps(sample().to_dict()))
    assert document["time"] == "2027-01-15T08:00:00+00:00" and document["uptime"] == 11220
    assert document["pool"]["workers"][1]["last_heap"] is None
    assert document["pool"]["workers"][0]["last_heap"]["used_bytes"] == 512 * 1024
    assert document["queue"]["depth_by_priority"] == {"-1": 1, "5": 2}
    assert document["tasks"]["failed_by_reason"] == {"TIMEOUT": 2, "JS_ERROR": 1}
    assert document["run_time"]["p99_seconds"] == 1.5
    assert document["tenants"] == [
        {"tenant": "acme", "running": 1, "queued": 3, "rejected": 2, "accepted": 20}
    ]


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0, 4, 0], 0.5, 1.5),  # half-way through the (1, 2] bucket
        ([4, 0, 0], 0.25, 0.25),  # the first bucket starts at 0
        ([0, 0, 2], 0.5, 11.0),  # the open last bucket ends at ten times the last bound
        ([1, 1, 0], 1.0, 2.0),
        ([0, 0, 0], 0.5, 0.0),  # no observations
    ],
)
def test_quantile_interpolates_inside_the_bucket(counts, q, expected):
    assert quantile([1.0, 2.0], counts, q) == pytest.approx(expected)
    assert Histogram((1.0, 2.0), tuple(counts), sum(counts)).quantile(q) == pytest.approx(expected)


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(start))


def test_formatters():
    assert [format_bytes(n) for n in (0, 1023, 1536, 3 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "3.0 GiB",
    ]
    assert [format_duration(s) for s in (5, 192, 7500, 4 * 86400 + 3 * 3600)] == [
        "5s",
        "3m 12s",
        "2h 05m",
        "4d 03h",
    ]


def test_table_shows_every_part_of_the_snapshot():
    text = render_stats(sample(), title="h:1")
    assert text.startswith("zako h:1 up 3h 07m at 2027-01-15 08:00:00 UTC\n")
    assert "server 0.1.0 · V8 14.4 · Python 3.11.7 · protocol zako.v1" in text
    assert (
        "WORKERS  live 2 (min 1, max 4)  busy 1  idle 1  started 5  reclaimed 2  crashed 1"
    ) in text
    assert _line(text, "w1").split() == [
        "w1",
        "4242",
        "busy",
        "17",
        "75.0",
        "MiB",
        "512.0",
        "KiB",
        "256.0",
        "MiB",
    ]
    assert _line(text, "w2").split()[-2:] == ["-", "-"]  # no task run yet: no heap
    assert "QUEUE  waiting 3 of 1024  running 1  bytes 2.0 KiB of 256.0 MiB" in text
    assert _line(text, "-1").split() == ["-1", "1"] and _line(text, "5 ").split() == ["5", "2"]
    assert "failed by reason:  JS_ERROR 1, TIMEOUT 2" in text
    assert "rejected by code:  RESOURCE_EXHAUSTED 2" in text
    assert _line(text, "queue wait").split() == [
        "queue",
        "wait",
        "4",
        "0.50",
        "2.00",
        "4.20",
        "5.00",
    ]
    assert _line(text, "run time").split()[3:6] == ["12.30", "250.00", "1500.00"]
    assert _line(text, "cpu ").split() == ["cpu", "2000", "500", "250"]
    assert _line(text, "memory ").split() == ["memory", "1.0", "GiB", "512.0", "MiB", "0", "B"]
    assert _line(text, "acme").split() == ["acme", "1", "3", "20", "2"]
    assert (
        "SYSTEM  cpus 2  cpu 37.5%  load 0.75  memory 6.0 GiB free of 8.0 GiB  server RSS 60.0 MiB"
    ) in text


def test_columns_line_up():
    lines = render_stats(sample()).splitlines()
    header = lines.index(next(line for line in lines if line.strip().startswith("TENANT ")))
    # Numbers are right-aligned: each row ends where its header ends.
    assert len(lines[header]) == len(lines[header + 1])


def test_empty_snapshot_renders():
    text = render_stats(Stats())
    assert "TENANTS  -" in text and "RESOURCES  -" in text and "failed by reason:  -" in text


def test_cluster_table_has_the_total_and_a_line_per_replica():
    one = sample()
    two = dataclasses.replace(one, versions=dataclasses.replace(one.versions, server="0.2.0"))
    total = dataclasses.replace(one, tasks=dataclasses.replace(one.tasks, completed=30))
    silent = Unavailable("refused", code=grpc.StatusCode.UNAVAILABLE)
    text = render_cluster(total, {"a:1": one, "b:1": two}, {"c:1": silent})
    assert text.startswith("zako total of 2 replicas")
    assert "completed 30" in text and "SYSTEM" not in text  # machines do not add up
    assert "REPLICAS  2 answered, 1 did not" in text
    assert _line(text, "b:1").split() == [
        "b:1",
        "0.2.0",
        "3h",
        "07m",
        "2",
        "1",
        "3",
        "15",
        "3",
        "2",
        "0",  # answered from the action cache (hits and joins)
        "37.5",
    ]
    assert "c:1: did not answer: UNAVAILABLE: refused" in text


@pytest.mark.parametrize("argv", [["stats", "--watch", "0"], ["stats", "--watch", "x"]])
def test_bad_watch_interval_is_a_usage_error(argv, capsys):
    assert main(argv) == EXIT_USAGE
    assert "seconds" in capsys.readouterr().err


def test_stats_prints_a_table_by_default(zako_server, capsys):
    assert main(["stats", "--target", zako_server.target]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"zako {zako_server.target} up ") and "\x1b" not in out
    assert "WORKERS  live" in out and "LATENCY (ms)" in out


def test_watch_refreshes_count_times(zako_server, capsys):
    argv = ["stats", "--target", zako_server.target, "--watch", "0.05", "--count", "2"]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("WORKERS  live") == 2
    assert "\x1b" not in out  # not a terminal: no escape codes, a blank line between frames


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_clears_the_screen_on_a_terminal(zako_server, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert (
        main(["stats", "--target", zako_server.target, "--watch", "0.05", "--count", "3"])
        == EXIT_OK
    )
    assert terminal.getvalue().count("\x1b[H\x1b[2J") == 3


def test_watch_json_prints_a_document_per_frame(zako_server, capsys):
    assert (
        main(["stats", "--json", "--target", zako_server.target, "--watch", "0.05", "--count", "2"])
        == EXIT_OK
    )
    frames = capsys.readouterr().out.split("\n\n")
    assert [json.loads(frame)["pool"]["max_workers"] for frame in frames] == [2, 2]


def test_ctrl_c_ends_the_watch_with_130(zako_server, monkeypatch, capsys):
    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli_commands.time, "sleep", interrupt)
    assert main(["stats", "--target", zako_server.target, "--watch"]) == EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert "WORKERS" in captured.out and "interrupted" in captured.err


def test_stats_all_table_and_json(zako_server, capsys):
    targets = f"{zako_server.target},127.0.0.1:1"
    assert main(["stats", "--all", "--target", targets]) == EXIT_UNAVAILABLE
    out = capsys.readouterr().out
    assert "REPLICAS  1 answered, 1 did not" in out and "127.0.0.1:1: did not answer" in out
    assert main(["stats", "--all", "--json", "--target", zako_server.target]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["total"]["pool"]["max_workers"] == 2 and document["errors"] == {}
