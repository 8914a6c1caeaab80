"""The server's error tree: every error the server raises on purpose, in one place.

    ZakoServerError
    ├── TaskRejection                 a task that is not accepted (a Rejected event)
    │   ├── InvalidTask               INVALID_ARGUMENT    malformed task; names the field
    │   ├── DuplicateTask             ALREADY_EXISTS      id already queued or running
    │   ├── CannotFit                 FAILED_PRECONDITION can never fit this server
    │   ├── MissingBlobs              FAILED_PRECONDITION names blobs the store lacks; upload, retry
    │   ├── Overloaded                RESOURCE_EXHAUSTED  queue full / quota; retry later
    │   ├── MessageTooLarge           RESOURCE_EXHAUSTED  over max_message_bytes; never retry
    │   └── Draining                  UNAVAILABLE         shutting down; retry elsewhere
    ├── BlobRejection                 a blob upload refused (BatchUpdateBlobs, WriteBlob)
    │   ├── InvalidBlob               INVALID_ARGUMENT    malformed digest, data not matching it
    │   └── BlobTooLarge              RESOURCE_EXHAUSTED  over max_blob_bytes or the whole store
    ├── QueueDeadlineExceeded         DEADLINE_EXCEEDED   waited past its deadline (a Failed event)
    ├── TaskNotFound                  NOT_FOUND           Cancel of an unknown task (of this tenant)
    ├── Unauthenticated               UNAUTHENTICATED     no or unknown bearer token
    └── PermissionDenied              PERMISSION_DENIED   the caller's role or tenant may not

Each class names its status as a `google.rpc.Code` / `grpc.StatusCode` member name (the
two enums share their names), so validation, admission, security and the engine raise
them without importing gRPC and stay unit-testable on their own. `service.py` is the one
module that turns them into RPC statuses. A worker that dies under a task is not an
exception at all: it is that task's Failed event (reason WORKER_LOST), built by the pool.
The server never sends a Python traceback to a client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# The google.rpc.Code names the server uses; service.py looks each up in the generated
# enums by name, and tests/server/test_service.py checks they all exist there.
StatusName = Literal[
    "INTERNAL",
    "INVALID_ARGUMENT",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
]


class ZakoServerError(Exception):
    """Base of every error the server raises on purpose."""

    code: StatusName = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TaskRejection(ZakoServerError):
    """A task refused before it ran; `field` names the culprit when one field is."""

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        retry_after: float | None = None,
        quota: str = "",
    ) -> None:
        super().__init__(message)
        self.field = field
        self.retry_after = retry_after
        self.quota = quota


class InvalidTask(TaskRejection):
    code = "INVALID_ARGUMENT"


class DuplicateTask(TaskRejection):
    code = "ALREADY_EXISTS"
    # The live task of that id came on the same stream: then the rejection carries no
    # id, since that id's one terminal event on the stream is the live task's.
    same_stream = False


class CannotFit(TaskRejection):
    code = "FAILED_PRECONDITION"


class MissingBlobs(TaskRejection):
    """The task names blobs (Module.digest, Task.tree, files of the tree) that the store
    does not hold for this tenant: all of them, as (hash, size) pairs, so the client
    uploads them in one round and submits again."""

    code = "FAILED_PRECONDITION"

    def __init__(self, message: str, missing: Sequence[tuple[str, int]] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)


class Overloaded(TaskRejection):
    code = "RESOURCE_EXHAUSTED"


class MessageTooLarge(TaskRejection):
    """A request over max_message_bytes: RESOURCE_EXHAUSTED as gRPC's own refusal says,
    but with no retry_after, since sending it again can never succeed."""

    code = "RESOURCE_EXHAUSTED"


class Draining(TaskRejection):
    code = "UNAVAILABLE"


class BlobRejection(ZakoServerError):
    """A blob refused on upload; `field` names the request field to blame."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class InvalidBlob(BlobRejection):
    code = "INVALID_ARGUMENT"


class BlobTooLarge(BlobRejection):
    """Never retry as is: the same blob is refused again (no retry_after)."""

    code = "RESOURCE_EXHAUSTED"


class QueueDeadlineExceeded(ZakoServerError):
    """A waiting task's deadline passed before it could start; the engine turns it into
    the task's Failed event (it was accepted, so it is not a rejection)."""

    code = "DEADLINE_EXCEEDED"


class TaskNotFound(ZakoServerError):
    code = "NOT_FOUND"


class Unauthenticated(ZakoServerError):
    code = "UNAUTHENTICATED"


class PermissionDenied(ZakoServerError):
    code = "PERMISSION_DENIED"


class InternalFault(TaskRejection):
    """A fault of the server's own while it handled one task: that task is rejected,
    and nothing else is (the stream, the other tasks, the server go on)."""

    code = "INTERNAL"
