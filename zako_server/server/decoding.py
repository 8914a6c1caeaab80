"""Request frames decoded without raising: a refused frame is a value, not an exception.

gRPC answers UNKNOWN when a request deserializer raises, and refuses an oversized
message itself, uncounted and (on Submit) by ending the whole stream. So gRPC's own
limit is set to twice ours (app.py), the deserializer made here returns a `Refused`
instead of raising, and the handler refuses the one request: counted in Stats, and on
a stream as that task's Rejected event (#12). Which status a refusal gets is decided
where every error's status is (service.py).
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.errors import InvalidTask, MessageTooLarge, TaskRejection


class Refused:
    """A request frame refused before any handler could read it: bytes that are not the
    message (INVALID_ARGUMENT), or more bytes than max_message_bytes (RESOURCE_EXHAUSTED).

    `task_ids` names every task of a refused TaskBatch, so that each gets its rejection.
    """

    __slots__ = ("error", "task_id", "task_ids")

    def __init__(
        self, error: TaskRejection, task_id: str = "", task_ids: tuple[str, ...] = ()
    ) -> None:
        self.error = error
        self.task_id = task_id
        self.task_ids = task_ids


def lenient(message_type: type[Message], limit: int) -> Callable[[bytes], Message | Refused]:
    """A request deserializer for `message_type` that refuses (never raises) bad frames."""
    name = message_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Message | Refused:
        try:
            message = message_type.FromString(data)
        except DecodeError as exc:
            return Refused(InvalidTask(f"the request is not a valid {name} message: {exc}"))
        if len(data) <= limit:
            return message
        task = getattr(message, "task", None)
        batch = getattr(message, "tasks", None)
        ids = tuple(t.id for t in batch.tasks) if isinstance(batch, pb.TaskBatch) else ()
        return Refused(
            MessageTooLarge(
                f"the request is {len(data)} bytes, over this server's message limit of "
                f"{limit} bytes (Limits.max_message_bytes); it can never be accepted as is",
                quota="max_message_bytes",
            ),
            task.id if isinstance(task, pb.Task) else "",
            ids,
        )

    return parse
