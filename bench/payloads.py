"""The JavaScript the benchmarks run and representative wire messages for the baselines.

The echo baseline sends and answers bytes of real `zako.v1` messages (a serialized
SubmitRequest with the trivial task, a SubmitResponse carrying its completed result with
every timing and heap field set), so the transport moves what Zako's own streams move.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from zako_sdk.proto.zako.v1 import executor_pb2 as pb

TRIVIAL_SOURCE = "module.exports = (x) => x + 1"

# ~50 ms of pure JS CPU per task for a calibrated `n` (see calibrate_cpu_task).
CPU_SOURCE = (
    "module.exports = (n) => { let s = 0; "
    "for (let i = 0; i < n; i++) { s = (s + i * i) % 1000003; } return s; }"
)


def commonjs_expression(source: str, input_json: str) -> str:
    """A script that runs a CommonJS entry module on its JSON input and evaluates to the
    result as JSON text: what a Zako worker does for a task, minus the sandboxing."""
    return (
        "(function () { const module = { exports: {} }; const exports = module.exports;\n"
        f"{source}\n"
        ";const entry = module.exports;"
        f" const input = JSON.parse({json.dumps(input_json or 'null')});"
        " return JSON.stringify(typeof entry === 'function' ? entry(input) : entry); })()"
    )


def _stamp(wall: float) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(int(wall * 1e9))
    return value


def _span(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def trivial_task(task_id: str | None = None, value: int = 41) -> pb.Task:
    return pb.Task(
        id=task_id or uuid.uuid4().hex,
        source=TRIVIAL_SOURCE,
        input_json=json.dumps(value),
        context=pb.CONTEXT_KIND_BUILD,
    )


def completed_result(value_json: str = "42") -> pb.Result:
    now = time.time()
    timings = pb.Timings(
        accepted_at=_stamp(now - 0.004),
        started_at=_stamp(now - 0.003),
        finished_at=_stamp(now),
        queued=_span(0.000_812_345),
        run=_span(0.002_345_678),
        cpu=_span(0.002_123_456),
    )
    heap = pb.HeapUsage(used_bytes=1_234_567, total_bytes=2_345_678, limit_bytes=268_435_456)
    return pb.Result(value_json=value_json, timings=timings, heap=heap)


@dataclass(frozen=True)
class Messages:
    """Serialized messages of one trivial task, as Zako's wire carries them."""

    submit_request: bytes
    accepted: bytes
    started: bytes
    completed: bytes
    run_request: bytes
    run_response: bytes

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}


def messages() -> Messages:
    task = trivial_task()
    now = time.time()

    def event(**kind: object) -> bytes:
        return pb.SubmitResponse(task_id=task.id, time=_stamp(now), **kind).SerializeToString()

    result = completed_result()
    return Messages(
        submit_request=pb.SubmitRequest(task=task).SerializeToString(),
        accepted=event(accepted=pb.Accepted(queue_position=0)),
        started=event(started=pb.Started(worker_id="w1", worker_pid=123456)),
        completed=event(completed=pb.Completed(result=result)),
        run_request=pb.RunRequest(task=task).SerializeToString(),
        run_response=pb.RunResponse(
            task_id=task.id, completed=pb.Completed(result=result)
        ).SerializeToString(),
    )
