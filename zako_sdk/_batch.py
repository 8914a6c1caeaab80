"""A batch: its tasks placed on streams of their own and settled together.

    prepared tasks ──run_batch──▶ a StreamSet of the batch's own (_placement.py)
        every task ended, or (not return_exceptions) one failed ──▶ outcomes, input order
        then: all placed and ended ─▶ finish the streams; else ─▶ close them (the servers
        cancel whatever of the batch is still queued or running)

Its own concern because a batch is one act with its own lifetime, unlike `submit()` on
the client's shared stream: giving up on it cancels exactly its tasks and nothing else of
the client's. `AsyncClient.batch()` hashes its trees once (`_hashing.py`), prepares and
checks the tasks, and hands them here.
"""

from __future__ import annotations

import asyncio

from zako_sdk._outcomes import Outcome
from zako_sdk._placement import Plan, StreamSet
from zako_sdk._stream import TaskHandle
from zako_sdk.errors import ClientClosed, ZakoError
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

__all__ = ["run_batch"]


async def run_batch(
    streams: StreamSet,
    prepared: list[tuple[pb.Task, Plan | None]],
    *,
    return_exceptions: bool,
    batches: set[StreamSet],
) -> list[Outcome]:
    """Place the `prepared` tasks on `streams` in input order and wait until every one
    ended, or (`return_exceptions` False) one failed; the outcomes of those that ended, in
    input order. `batches` (the client's open batches, which `cancel()` and `aclose()`
    look through) holds `streams` while the batch runs.
    """
    batches.add(streams)
    settled = asyncio.Event()
    remaining = len(prepared)

    def on_done(future: asyncio.Future[Outcome]) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 or (not return_exceptions and isinstance(future.result(), ZakoError)):
            settled.set()

    handles: list[TaskHandle] = []
    try:
        for task, plan in prepared:
            if settled.is_set():
                break
            handle = streams.admit(task, None, plan)
            handle._future.add_done_callback(on_done)
            handles.append(handle)
            await streams.place(handle)
        await settled.wait()
        return [h._future.result() for h in handles if h.done()]
    finally:
        batches.discard(streams)
        if all(h.done() for h in handles) and len(handles) == len(prepared):
            await streams.finish()
        else:
            await streams.aclose(ClientClosed("the batch was abandoned"))
