"""Placing tasks on the lanes, and placing them again: the streams of one owner.

    submit ─▶ StreamSet.place ─▶ Cluster.pick (_replicas.py)
                │
                ├─▶ Uploads.ready: the task's tree on that replica (_uploads.py)
                └─▶ this set's Submit stream on that lane
    rejected for capacity / never sent ─▶ StreamSet.retry ─▶ wait ─▶ place on another lane
    rejected for missing blobs (evicted) ─▶ forget them there ─▶ place on the same lane

A StreamSet owns streams: the client's shared one lives as long as the client; each
batch() has its own, so that abandoning a batch cancels exactly its tasks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from zako_sdk._outcomes import Outcome
from zako_sdk._replicas import Cluster, Lane
from zako_sdk._retries import plan_retry
from zako_sdk._stream import OnLog, TaskHandle, _SubmitStream
from zako_sdk._uploads import BlobRefused, Uploads
from zako_sdk.errors import (
    ClientClosed,
    InvalidTask,
    RPCError,
    TaskRejected,
    Unavailable,
    ZakoError,
)
from zako_sdk.models import Retry
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import ModuleTree

__all__ = ["MISSING_BLOB_ROUNDS", "Plan", "StreamSet"]

# Times a task is resubmitted after a rejection for blobs the replica lacks (evicted
# between our upload and the task): more means the store is thrashing, which the error
# then says rather than looping.
MISSING_BLOB_ROUNDS = 3


@dataclass(eq=False)
class Plan:
    """What placing a task needs beyond its message: the tree whose blobs must be on the
    replica first, the action key it is routed by, and its rounds of missing blobs."""

    tree: ModuleTree | None = None
    route: bytes | None = None
    missing_rounds: int = 0


class StreamSet:
    """Streams of one owner, one per lane, and the tasks in flight on them (including those
    waiting to be retried). The handles' `_Owner`: it places attempts and plans retries."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        metadata: tuple[tuple[str, str], ...],
        max_in_flight: int | None,
        retry: Retry | None,
        uploads: Uploads,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.cluster = cluster
        self.uploads = uploads
        self.handles: dict[str, TaskHandle] = {}
        self._plans: dict[str, Plan] = {}  # only tasks with a tree or a route
        self.closed = False
        self._metadata = metadata
        self._max_in_flight = max_in_flight
        self._retry = retry
        self._rand = rand
        self._streams: dict[Lane, _SubmitStream] = {}

    def admit(self, task: pb.Task, on_log: OnLog | None, plan: Plan | None = None) -> TaskHandle:
        """A handle for `task`, refused if a task with its id is in flight here: events are
        routed by id, and the server would reject the second one anyway."""
        if self.closed:
            raise ClientClosed("this client is closed")
        existing = self.handles.get(task.id)
        if existing is not None and not existing.done():
            raise InvalidTask(
                f"task id {task.id!r} is already in flight on this client",
                task_id=task.id,
                code=grpc.StatusCode.ALREADY_EXISTS,
                field="task.id",
            )
        handle = TaskHandle(task, on_log, owner=self)
        self.handles[task.id] = handle
        if plan is not None:
            self._plans[task.id] = plan
        return handle

    def forget(self, handle: TaskHandle) -> None:
        """Drop a handle that is done (the handle calls this when it resolves)."""
        if self.handles.get(handle.task_id) is handle:
            del self.handles[handle.task_id]
            self._plans.pop(handle.task_id, None)

    async def place(self, handle: TaskHandle, lane: Lane | None = None) -> None:
        """Start an attempt of `handle` on `lane` (the next in rotation if None).

        Raises nothing on the task's account: an attempt that cannot start ends like any
        other (`handle._ended`, with sent=False), which may schedule the next one.
        """
        plan = self._plans.get(handle.task_id) if self._plans else None
        if lane is None:
            if plan is not None and plan.route is not None:
                lane = self.cluster.pick(await self.cluster.route_lanes(), route=plan.route)
            else:
                lanes = self.cluster.known_lanes
                lane = self.cluster.pick(lanes if lanes is not None else await self.cluster.lanes())
        handle._attempts += 1
        handle._lane = lane
        stream = self._streams.get(lane)
        try:
            if plan is not None and plan.tree is not None:
                await self._ready(handle, lane, plan.tree)
            if stream is None or stream.closed:
                stream = await self._stream_for(lane)
            if stream.capped:
                await stream.submit(handle)
            else:
                stream.send(handle)  # the usual case, without a coroutine per task
        except ZakoError as error:
            handle._ended(error, sent=False)
        except BlobRefused as refused:
            handle._ended(refused.for_task(handle.task_id), sent=False)

    async def _ready(self, handle: TaskHandle, lane: Lane, tree: ModuleTree) -> None:
        """The task's tree on the lane's replica before the task (or the tree inline)."""
        if not await lane.replica.ready():
            raise Unavailable(
                f"cannot connect to {lane.replica.target}", code=grpc.StatusCode.UNAVAILABLE
            )
        task = handle._task
        await self.uploads.ready(lane.replica, task, tree)
        if not task.HasField("tree"):  # sent inline from now on, to any replica
            self._plans[handle.task_id].tree = None
            handle._request = None  # built from the task as it was

    async def _stream_for(self, lane: Lane) -> _SubmitStream:
        stream = self._streams.get(lane)
        if stream is not None and not stream.closed:
            return stream
        if not await lane.replica.ready():
            raise Unavailable(
                f"cannot connect to {lane.replica.target}", code=grpc.StatusCode.UNAVAILABLE
            )
        if self.closed:
            raise ClientClosed("this client is closed")
        stream = self._streams.get(lane)
        if stream is None or stream.closed:  # nobody opened one while we waited
            stream = _SubmitStream(lane.replica.stub, self._metadata, self._max_in_flight)
            self._streams[lane] = stream
        return stream

    def retry(self, handle: TaskHandle, outcome: Outcome, *, sent: bool) -> bool:
        if self.closed:
            return False
        task_plan = self._plans.get(handle.task_id) if self._plans else None
        lane = handle._lane
        if (
            isinstance(outcome, TaskRejected)
            and outcome.missing_blobs
            and task_plan is not None
            and task_plan.tree is not None
            and lane is not None
            and task_plan.missing_rounds < MISSING_BLOB_ROUNDS
        ):
            # Evicted since we uploaded them: upload again to the same replica (where the
            # task's cached outcome would be) and resubmit; the task never ran.
            task_plan.missing_rounds += 1
            self.uploads.forget(lane.replica, outcome.missing_blobs)
            handle._waiting = asyncio.get_running_loop().create_task(
                self._again(handle, 0.0, lane), name=f"zako-reupload-{handle.task_id}"
            )
            return True
        plan = plan_retry(self._retry, handle._attempts, outcome, sent=sent, rand=self._rand())
        if plan is None:
            return False
        if lane is not None:
            self.cluster.cool(lane, plan.cooldown)
            if isinstance(outcome, Unavailable) and not sent:
                self.cluster.unreachable(lane)
        handle._waiting = asyncio.get_running_loop().create_task(
            self._again(handle, plan.delay), name=f"zako-retry-{handle.task_id}"
        )
        return True

    async def _again(self, handle: TaskHandle, delay: float, lane: Lane | None = None) -> None:
        try:
            if lane is None:
                task_plan = self._plans.get(handle.task_id)
                route = None if task_plan is None else task_plan.route
                lane = await self.cluster.next_lane(delay, avoid=handle._lane, route=route)
            await self.place(handle, lane)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the handle pending forever
            error = RPCError(
                f"resubmitting the task failed: {exc!r}", code=grpc.StatusCode.INTERNAL
            )
            error.__cause__ = exc
            handle._resolve(error)

    async def finish(self) -> None:
        """Half-close every stream and let the servers end them (batch done)."""
        self.closed = True
        streams, self._streams = list(self._streams.values()), {}
        await asyncio.gather(*(stream.finish() for stream in streams))

    async def aclose(self, error: ZakoError) -> None:
        """End everything still in flight with `error`; the servers cancel those tasks."""
        self.closed = True
        for handle in list(self.handles.values()):
            if handle._stream is None and not handle.done():  # between attempts
                if handle._waiting is not None:
                    handle._waiting.cancel()
                handle._resolve(error)
        streams, self._streams = list(self._streams.values()), {}
        await asyncio.gather(*(stream.aclose(error) for stream in streams))
