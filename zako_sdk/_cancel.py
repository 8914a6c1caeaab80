"""Cancelling a task by id: where the unary Cancel goes, and what it answers.

    a task this client holds ─┬─ between attempts (no stream) ─▶ cancelled here: QUEUED
                              └─ on a replica's stream ─▶ Cancel on that replica
                                     NOT_FOUND while our stream still has it (not yet
                                     written, or just finished) ─▶ in-band cancel: QUEUED
    any other id ─▶ Cancel on every replica (fan-out) ─▶ first_cancel: whoever had it

Its own concern because a cancel by id must find the task first: the client's handles
know which replica has it (and whether any does yet), the replicas know the rest, and
"not found" means something only once every replica that could have it said so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from zako_sdk._stream import TaskHandle
from zako_sdk.errors import RPCError, ZakoError
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

__all__ = ["cancel_task", "cancelled_locally", "first_cancel"]

Unary = Callable[[str, Any, pb_grpc.ExecutorStub | None], Awaitable[Any]]
"""One unary call on a replica's stub (the client's `_unary`: errors mapped)."""
FanOut = Callable[[str, Any], Awaitable[dict[str, Any]]]
"""One call on every replica (the client's `_fan_out`): each answer or error, by replica."""


async def cancel_task(
    handle: TaskHandle | None,
    task_id: str,
    reason: str,
    *,
    unary: Unary,
    fan_out: FanOut,
) -> pb.CancelResponse:
    """Cancel `task_id`; `handle` is this client's unfinished handle of it, if it has one."""
    request = pb.CancelRequest(task_id=task_id, reason=reason)
    if handle is not None:
        stream = handle._stream
        if stream is None:
            handle._cancel_nowait(reason)
            return cancelled_locally()
        lane = handle._lane
        if lane is not None and not lane.replica.balanced:
            try:
                answer: pb.CancelResponse = await unary("Cancel", request, lane.replica.stub)
                return answer
            except RPCError as exc:
                # Not on the server (not yet written, or just finished) while our
                # stream still holds it: the in-band cancel settles it either way.
                if exc.code is not grpc.StatusCode.NOT_FOUND or not stream.pending(task_id):
                    raise
                handle._cancel_nowait(reason)
                return cancelled_locally()
    return first_cancel(await fan_out("Cancel", request))


def first_cancel(answers: dict[str, Any]) -> pb.CancelResponse:
    """The fan-out's verdict on a cancel: success if any replica had the task.

    NOT_FOUND only when every replica said so: a replica that could not be asked might
    have had the task, so its error is the truer answer.
    """
    errors: list[ZakoError] = []
    for answer in answers.values():
        if isinstance(answer, pb.CancelResponse):
            return answer
        errors.append(answer)
    for error in errors:
        if getattr(error, "code", None) is not grpc.StatusCode.NOT_FOUND:
            raise error
    raise errors[0]


def cancelled_locally() -> pb.CancelResponse:
    """What unary cancel answers for a task this client held between attempts."""
    return pb.CancelResponse(previous_state=pb.TASK_STATE_QUEUED)
