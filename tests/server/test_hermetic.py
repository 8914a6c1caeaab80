"""Hermetic contexts are deterministic: the same task returns the same bytes on any server.

Two servers are started with different LANG/TZ in their environment (their workers inherit
it) and at different wall times; a task that reads the clock, draws random numbers and
formats for a locale must answer both identically, and a task with another seed or epoch
must not.
"""

from __future__ import annotations

import datetime
import json

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from zako_sdk import AsyncClient, TaskSpec
from zako_sdk._base import build_task
from zako_sdk._cli_args import EXIT_OK, EXIT_USAGE
from zako_sdk.cli import main
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

TASK = """module.exports = () => ({
  now: Date.now(),
  date: new Date().toString(),
  called: Date(),
  local: new Date(2020, 0, 2, 3, 4, 5).toString(),
  offset: new Date().getTimezoneOffset(),
  random: [Math.random(), Math.random()],
  bytes: Array.from(crypto.getRandomValues(new Uint8Array(8))),
  uuid: crypto.randomUUID(),
  number: (1234567.891).toLocaleString(),
  array: [1234.5, new Date(0)].toLocaleString(),
  intl: new Intl.NumberFormat().format(9876543.21),
  dateTime: new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' }).format(),
  zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  locale: Intl.NumberFormat().resolvedOptions().locale,
  performance: [performance.timeOrigin, performance.now()],
  collation: ['b', 'a', 'B', 'ä'].sort(new Intl.Collator().compare),
  compare: 'a'.localeCompare('B'),
  upper: 'i'.toLocaleUpperCase(),
  options: Intl.DateTimeFormat().resolvedOptions(),
  plural: new Intl.PluralRules().select(1),
  relative: new Intl.RelativeTimeFormat().format(-1, 'day'),
  list: new Intl.ListFormat().format(['a', 'b', 'c']),
})"""

HOSTS = [
    {"LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "TZ": "America/New_York"},
    {"LANG": "tr_TR.UTF-8", "LC_ALL": "", "TZ": "Asia/Tokyo"},
]


async def run_on(server, **fields) -> pb.RunResponse:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        return await stub.Run(
            pb.RunRequest(task=pb.Task(source=TASK, context=pb.CONTEXT_KIND_BUILD, **fields)),
            timeout=30,
        )


async def answers(server_factory, monkeypatch, **fields) -> list[str]:
    out = []
    for env in HOSTS:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        server = server_factory(min_workers=1, max_workers=1)
        reply = await run_on(server, **fields)
        assert reply.WhichOneof("outcome") == "completed", reply
        out.append(reply.completed.result.value_json)
    return out


async def test_the_same_task_gives_identical_bytes_on_servers_with_other_locales_and_zones(
    server_factory, monkeypatch
):
    first, second = await answers(server_factory, monkeypatch)
    assert first == second
    value = json.loads(first)
    assert value["now"] == 1_704_067_200_000
    assert value["date"] == "Mon Jan 01 2024 00:00:00 GMT+0000 (Coordinated Universal Time)"
    assert value["called"] == value["date"]
    assert value["local"] == "Thu Jan 02 2020 03:04:05 GMT+0000 (Coordinated Universal Time)"
    assert value["offset"] == 0
    assert value["number"] == "1,234,567.891"
    assert value["array"] == "1,234.5,1/1/1970, 12:00:00 AM"
    assert value["intl"] == "9,876,543.21"
    assert value["dateTime"] == "Monday, January 1, 2024 at 12:00:00 AM UTC"
    assert (value["zone"], value["locale"]) == ("UTC", "en-US")
    assert value["performance"] == [1_704_067_200_000, 0]
    assert all(0 <= r < 1 for r in value["random"]) and value["random"][0] != value["random"][1]
    assert value["uuid"][14] == "4"
    assert value["collation"] == ["a", "ä", "b", "B"] and value["compare"] == -1
    assert (value["upper"], value["plural"], value["list"]) == ("I", "one", "a, b, and c")
    assert value["relative"] == "1 day ago"
    assert value["options"]["locale"] == "en-US" and value["options"]["timeZone"] == "UTC"


async def test_another_seed_or_epoch_changes_what_it_should(zako_server):
    base = json.loads((await run_on(zako_server)).completed.result.value_json)
    again = json.loads((await run_on(zako_server)).completed.result.value_json)
    assert base == again

    seeded = json.loads((await run_on(zako_server, seed="other")).completed.result.value_json)
    for key in ("random", "bytes", "uuid"):
        assert seeded[key] != base[key], key
    assert seeded["now"] == base["now"] and seeded["number"] == base["number"]

    epoch = Timestamp(seconds=86_400)
    moved = json.loads((await run_on(zako_server, epoch=epoch)).completed.result.value_json)
    assert moved["now"] == 86_400_000
    assert moved["date"] == "Fri Jan 02 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
    assert moved["random"] == base["random"]  # the seed derives from content, not the epoch


async def test_the_default_seed_follows_the_tasks_content(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def draw(input_json: str) -> float:
            task = pb.Task(source="module.exports = () => Math.random()", input_json=input_json)
            reply = await stub.Run(pb.RunRequest(task=task), timeout=30)
            return json.loads(reply.completed.result.value_json)

        assert await draw("1") == await draw("1")
        assert await draw("1") != await draw("2")


async def test_system_access_has_the_real_clock_and_randomness(zako_server):
    source = "module.exports = () => [Date.now(), Math.random(), crypto.randomUUID()]"
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        values = []
        for _ in range(2):
            task = pb.Task(source=source, context=pb.CONTEXT_KIND_CONFIG, system_access=True)
            reply = await stub.Run(pb.RunRequest(task=task), timeout=30)
            values.append(json.loads(reply.completed.result.value_json))
    assert values[0][0] > 1_704_067_200_000  # the real clock, later than the default epoch
    assert values[0][1] != values[1][1] and values[0][2] != values[1][2]


async def test_hermetic_timers_run_on_the_virtual_clock(zako_server):
    """Timers are present and deterministic: each fires in due order, moving the task's
    clock to its due time, and nothing waits (a minute's sleep is a minute on the clock)."""
    source = """module.exports = async () => {
      const t0 = Date.now();
      const order = [];
      setTimeout(() => order.push(['b', Date.now() - t0]), 50);
      setTimeout(() => order.push(['a', Date.now() - t0]), 10);
      let n = 0;
      const every = setInterval(() => {
        order.push(['tick', Date.now() - t0, performance.now()]);
        if (++n === 3) clearInterval(every);
      }, 20);
      await new Promise((resolve) => setTimeout(resolve, 60000));
      setImmediate(() => order.push(['immediate', Date.now() - t0]));
      await new Promise((resolve) => setTimeout(resolve, 0));
      return [order, new Date().toISOString()];
    };"""
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        task = pb.Task(source=source, context=pb.CONTEXT_KIND_RULE, timeout=Duration(seconds=20))
        reply = await stub.Run(pb.RunRequest(task=task), timeout=30)
    value = json.loads(reply.completed.result.value_json)
    assert value == [
        [
            ["a", 10],
            ["tick", 20, 20],
            ["tick", 40, 40],
            ["b", 50],
            ["tick", 60, 60],
            ["immediate", 60001],
        ],
        "2024-01-01T00:01:00.001Z",
    ]


CLOCK_AND_DRAW = "module.exports = () => [Date.now(), new Date().toISOString(), Math.random()]"


async def test_the_sdk_and_cli_pass_epoch_and_seed(zako_server, tmp_path, capsys):
    when = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    async with AsyncClient(zako_server.target) as client:
        pinned = (await client.run(CLOCK_AND_DRAW, epoch=when, seed="s1")).value
        again = (await client.run(CLOCK_AND_DRAW, epoch=946_684_800.0, seed="s1")).value
        other = (await client.run(CLOCK_AND_DRAW, epoch=when, seed="s2")).value
    assert pinned[:2] == [946_684_800_000, "2000-01-01T00:00:00.000Z"]
    assert again == pinned and other[2] != pinned[2]
    with pytest.raises(ValueError, match="timezone-aware"):
        build_task(TaskSpec("x", epoch=datetime.datetime(2000, 1, 1)), default_timeout=None)

    path = tmp_path / "clock.js"
    path.write_text(CLOCK_AND_DRAW)
    argv = ["run", str(path), "--target", zako_server.target, "--compact"]
    assert main([*argv, "--epoch", "2000-01-01T00:00:00Z", "--seed", "s1"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == pinned
    assert main([*argv, "--epoch", "2000-01-01T00:00:00"]) == EXIT_USAGE  # no zone


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"seed": "s" * 257}, "task.seed"),
        ({"epoch": Timestamp(seconds=9_000_000_000_000)}, "task.epoch"),
    ],
)
async def test_a_seed_or_epoch_out_of_range_is_invalid_for_that_task(zako_server, fields, field):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Run(pb.RunRequest(task=pb.Task(source=CLOCK_AND_DRAW, **fields)), timeout=30)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in exc.value.details()


async def test_every_way_to_read_the_clock_reads_the_virtual_clock(zako_server):
    """Hermeticity holes are ways to reach the real clock the obvious ones do not cover."""
    source = """module.exports = () => {
      const epoch = 1704067200000;
      const dtf = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', dateStyle: 'short' });
      const reads = {
        now: Date.now(), date: +new Date(), called: Date.parse(Date()),
        ctor: +new (Object.getPrototypeOf(new Date(0)).constructor)(),
        reflect: +Reflect.construct(Date, []), protoNow: Date.prototype.constructor.now(),
        subclass: +new (class extends Date {})(),
        format: dtf.format(), parts: dtf.formatToParts().map((p) => p.value).join(''),
        perf: performance.timeOrigin + performance.now(),
        hrtime: process.hrtime()[0] * 1000, bigint: Number(process.hrtime.bigint() / 1000000n),
        event: new Event('x').timeStamp,
      };
      return { epoch, reads };
    };"""
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        task = pb.Task(source=source, context=pb.CONTEXT_KIND_BUILD)
        reply = await stub.Run(pb.RunRequest(task=task), timeout=30)
    value = json.loads(reply.completed.result.value_json)
    epoch, reads = value["epoch"], value["reads"]
    assert reads.pop("format") == "1/1/24" and reads.pop("parts") == "1/1/24"
    assert reads == dict.fromkeys(reads, epoch)
