"""The server's error tree, and the one table that maps it to gRPC status codes.

    ZakoServerError
    ├── TaskRejection                 a task that is not accepted (a Rejected event)
    │   ├── InvalidTask               INVALID_ARGUMENT    malformed task; names the field
    │   ├── DuplicateTask             ALREADY_EXISTS      id already queued or running
    │   ├── CannotFit                 FAILED_PRECONDITION can never fit this server
    │   ├── Overloaded                RESOURCE_EXHAUSTED  queue full / quota; retry later
    │   └── Draining                  UNAVAILABLE         shutting down; retry elsewhere
    ├── TaskNotFound                  NOT_FOUND           Cancel of an unknown task
    └── WorkerLost                    (terminal event)    the worker died under a task

Rejections are raised by validation and admission and turned into either a Rejected
event (Submit) or an RPC status (unary Run) in `service.py` — the only place that knows
about gRPC; codes are held here as status names so admission and the pool stay free of
gRPC imports and unit-testable on their own. The server never sends a Python traceback to a client.
"""

from __future__ import annotations


class ZakoServerError(Exception):
    """Base of every error the server raises on purpose."""

    code: str = "INTERNAL"


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
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.quota = quota


class InvalidTask(TaskRejection):
    code = "INVALID_ARGUMENT"


class DuplicateTask(TaskRejection):
    code = "ALREADY_EXISTS"


class CannotFit(TaskRejection):
    code = "FAILED_PRECONDITION"


class Overloaded(TaskRejection):
    code = "RESOURCE_EXHAUSTED"


class Draining(TaskRejection):
    code = "UNAVAILABLE"


class TaskNotFound(ZakoServerError):
    code = "NOT_FOUND"


class WorkerLost(ZakoServerError):
    """A worker process died or stopped answering while it held a task."""

    code = "UNAVAILABLE"


def status_name_of(exc: BaseException) -> str:
    """The gRPC status code name for an exception; anything unexpected is INTERNAL."""
    if isinstance(exc, ZakoServerError):
        return exc.code
    return "INTERNAL"
