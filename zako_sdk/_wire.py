"""The shape of a Submit stream's messages against a server that batches (#16).

    writer: task, task, task, cancel ──coalesce──▶ TaskBatch(task, task, task), cancel
    reader: EventBatch(e1, e2, …) ──▶ e1, e2, … (unpacked in _stream's read loop)

Tasks "ready together" are those queued in one event-loop tick, and, on a stream with
many tasks in flight, those queued within a short linger (Pace): a closed loop of
callers queues one task per result, so without it nearly every task left alone and paid
a whole gRPC write (half of the client's CPU per task).

Whether a server batches is its CapabilitiesResponse.submit_batching, asked once per
stream in the background (the first tasks go out one per message meanwhile, and any
failure of that call leaves the stream so). A server that does not say so never gets a
TaskBatch or StreamOptions, so it never sends an EventBatch either.
"""

from __future__ import annotations

from collections import deque

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

# Tasks coalesce into one TaskBatch message up to this many bytes; a larger task goes
# alone (it gains nothing from company, and the batch must stay under any message limit).
BATCH_BYTES = 256 * 1024
# How long a stream waits for the server's Capabilities before it gives up batching.
PROBE_TIMEOUT = 10.0
# The stream's options once the server batches: events ready together come as one.
OPTIONS = pb.SubmitRequest(options=pb.StreamOptions(batch_events=True))


async def batches(stub: pb_grpc.ExecutorStub, metadata: tuple[tuple[str, str], ...]) -> bool:
    """Whether the server accepts TaskBatch and StreamOptions (False if it cannot say)."""
    try:
        caps = await stub.Capabilities(
            pb.CapabilitiesRequest(), metadata=metadata, timeout=PROBE_TIMEOUT
        )
    except Exception:  # an old server, a broken channel, a timeout: no batching
        return False
    return bool(caps.submit_batching)


def coalesce(
    first: pb.SubmitRequest,
    outbox: deque[tuple[pb.SubmitRequest | None, str | None]],
    unsent: set[str],
) -> pb.SubmitRequest:
    """`first` (a task request) and the task requests queued right behind it in the
    writer's `outbox`, as one TaskBatch message of up to BATCH_BYTES. The ones taken
    leave the outbox and `unsent`: from here on the server may have them."""
    room = BATCH_BYTES - first.ByteSize()
    tasks = [first.task]
    while outbox:
        request, task_id = outbox[0]
        if request is None or task_id is None:
            break  # a cancel, the options or the half-close keep their place after these
        size = request.ByteSize()
        if size > room:
            break
        room -= size
        outbox.popleft()
        unsent.discard(task_id)
        tasks.append(request.task)
    if len(tasks) == 1:
        return first
    return pb.SubmitRequest(tasks=pb.TaskBatch(tasks=tasks))
