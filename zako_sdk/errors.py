"""Every error the SDK raises, and the one table that turns gRPC statuses into them.

    ZakoError
    ├── TaskError                  a task ended without a value; has .task_id
    │   ├── TaskFailed             the script threw, timed out, ran out of memory, …
    │   │   └── TaskTimeout        .reason == "TIMEOUT"
    │   ├── TaskCancelled          cancelled by us, by another caller or by the server
    │   └── TaskRejected           never accepted; .code, .message, .field, .retry_after,
    │       │                          .quota, .missing_blobs
    │       ├── InvalidTask        the task itself is wrong: do not retry it as is
    │       │   └── MessageTooLarge  its request is over the message limit (never retried)
    │       └── Overloaded         capacity: retry after .retry_after seconds
    ├── TransportError             the call failed; .code, .details
    │   ├── Unavailable            server down, unreachable or draining; the stream broke
    │   ├── DeadlineExceeded       a unary call ran past its deadline
    │   ├── Unauthenticated
    │   ├── PermissionDenied
    │   └── RPCError               any other status
    └── ClientClosed (also RuntimeError)   misuse: the client was already closed

The three families are kept apart on purpose: misuse is a RuntimeError and
a bug in the caller; capacity (`Overloaded`) is worth a retry; failure (`TaskFailed`,
`Unavailable`) carries what is needed to diagnose it. No raw `grpc.RpcError` leaves the
SDK: `map_rpc_error` is the only door, and callers raise its result `from` the original.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from zako_sdk.trees import Digest

if TYPE_CHECKING:
    from zako_sdk.models import JsError, Timings

__all__ = [
    "ClientClosed",
    "DeadlineExceeded",
    "InvalidTask",
    "MessageTooLarge",
    "Overloaded",
    "PermissionDenied",
    "RPCError",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskRejected",
    "TaskTimeout",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "ZakoError",
    "map_rpc_error",
    "rejection_error",
    "status_code",
]


def _rebuild(cls: type[ZakoError], args: tuple[object, ...], state: dict[str, object]) -> ZakoError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ZakoError(Exception):
    """Base of every error the SDK raises; catch it to catch them all."""

    def __reduce__(self) -> tuple[object, ...]:
        # The subclasses take keyword-only fields, which Exception's default pickling
        # (cls(*args)) cannot rebuild; build tools do send errors between processes.
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class TaskError(ZakoError):
    """A task ended without producing a value."""

    def __init__(self, message: str, *, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskFailed(TaskError):
    """The task ran and failed: a JS throw, a syntax error, OOM, a lost worker, ….

    `reason` is the FailureReason name without its prefix ("JS_ERROR", "TIMEOUT", …) so
    callers can branch on it without importing the generated protobuf module. `cached`
    says the failure came from the server's action cache (an earlier identical task).
    """

    def __init__(
        self,
        *,
        task_id: str,
        reason: str,
        js_error: JsError,
        timings: Timings | None = None,
        cached: bool = False,
    ) -> None:
        text = js_error.format()
        super().__init__(text if reason == "JS_ERROR" else f"{reason}: {text}", task_id=task_id)
        self.reason = reason
        self.js_error = js_error
        self.timings = timings
        self.cached = cached


class TaskTimeout(TaskFailed):
    """The task ran past its timeout and was stopped."""


class TaskCancelled(TaskError):
    """The task was cancelled before it finished."""

    def __init__(self, *, task_id: str, reason: str, was_running: bool = False) -> None:
        super().__init__(
            f"task {task_id} was cancelled: {reason or 'no reason given'}", task_id=task_id
        )
        self.reason = reason
        self.was_running = was_running


class TaskRejected(TaskError):
    """The server did not accept the task; it never ran.

    `missing_blobs` (FAILED_PRECONDITION) names the blobs of the task's tree the server
    lacks; the clients upload them and submit again before this reaches a caller.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        code: grpc.StatusCode,
        field: str = "",
        retry_after: float | None = None,
        quota: str = "",
        missing_blobs: tuple[Digest, ...] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}" if message else code.name, task_id=task_id)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.quota = quota  # the limit that was hit, e.g. "tenant/acme/max_queued"
        self.missing_blobs = missing_blobs


class InvalidTask(TaskRejected):
    """The task can never run on this server as written (bad field, too big, duplicate id)."""


class MessageTooLarge(InvalidTask):
    """The task's request is larger than the message limit, so no attempt can succeed.

    Raised before sending when the limit is known (the server's Limits.max_message_bytes
    from Capabilities, else the channel's grpc.max_send_message_length), else from the
    refusal. Its `code` is RESOURCE_EXHAUSTED, as gRPC's own refusal says, but unlike
    `Overloaded` it is never retried; `quota` is "max_message_bytes"."""


class Overloaded(TaskRejected):
    """The server is at capacity (quota, queue full, draining); `retry_after` says when to retry."""


class TransportError(ZakoError):
    """The call itself failed; `code` is the gRPC status, `details` its text."""

    def __init__(self, details: str, *, code: grpc.StatusCode) -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details


class Unavailable(TransportError):
    """The server cannot be reached, is shutting down, or dropped the stream."""


class DeadlineExceeded(TransportError):
    """A call ran past its deadline."""


class Unauthenticated(TransportError):
    """The server did not accept the caller's credentials."""


class PermissionDenied(TransportError):
    """The caller may not do this (e.g. an admin call, or cancelling another's task)."""


class RPCError(TransportError):
    """A gRPC status with no more specific class here (INTERNAL, NOT_FOUND, …)."""


class ClientClosed(ZakoError, RuntimeError):
    """The client was used after `close()`/`aclose()`; a bug in the caller."""


# The one table, status → class. Two columns because the same status means different
# things: INVALID_ARGUMENT on Run is about the task, on Stats it is about the call.
_TRANSPORT: dict[grpc.StatusCode, type[TransportError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}
_REJECTION: dict[grpc.StatusCode, type[TaskRejected]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidTask,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidTask,
    grpc.StatusCode.ALREADY_EXISTS: InvalidTask,
    grpc.StatusCode.OUT_OF_RANGE: InvalidTask,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
}
MESSAGE_LIMIT_QUOTA = "max_message_bytes"
_TOO_LARGE = re.compile(r"message larger than max", re.IGNORECASE)
_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The StatusCode for a google.rpc.Code number (as Rejected.code carries); UNKNOWN if odd."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def rejection_error(
    code: grpc.StatusCode,
    message: str,
    *,
    task_id: str,
    field: str = "",
    retry_after: float | None = None,
    quota: str = "",
    missing_blobs: tuple[Digest, ...] = (),
) -> TaskRejected:
    """The error for a task the server turned away, from a Rejected event or a Run status.

    A rejection that says UNAVAILABLE (a draining server) is capacity, not a broken
    transport: the task is fine and another attempt later, or elsewhere, may succeed.
    """
    if code is grpc.StatusCode.UNAVAILABLE:
        cls: type[TaskRejected] = Overloaded
    elif code is grpc.StatusCode.RESOURCE_EXHAUSTED and (
        quota == MESSAGE_LIMIT_QUOTA or _TOO_LARGE.search(message)
    ):
        # Over the message limit: the server says so with its quota subject; gRPC's own
        # refusal (a limit below ours, or a request over twice it) only in its text.
        cls = MessageTooLarge
        quota = MESSAGE_LIMIT_QUOTA
    else:
        cls = _REJECTION.get(code, TaskRejected)
    return cls(
        message,
        task_id=task_id,
        code=code,
        field=field,
        retry_after=retry_after,
        quota=quota,
        missing_blobs=missing_blobs,
    )


_MISSING_SUBJECT = re.compile(r"^blobs/([0-9a-f]{64})/([0-9]+)$")


def _missing(failure: error_details_pb2.PreconditionFailure) -> list[Digest]:
    """The digests of a PreconditionFailure's "MISSING" violations ("blobs/{hash}/{size}")."""
    found = []
    for violation in failure.violations:
        match = _MISSING_SUBJECT.match(violation.subject)
        if violation.type == "MISSING" and match:
            found.append(Digest(match.group(1), int(match.group(2))))
    return found


def _rich_details(exc: grpc.RpcError) -> tuple[float | None, str, tuple[Digest, ...]]:
    """RetryInfo's delay, QuotaFailure's subject and PreconditionFailure's missing blobs
    from the status details, if present.

    The server puts them in `grpc-status-details-bin` (google.rpc.Status) because a
    unary call has no Rejected message to carry them. A malformed or mismatched blob is
    ignored: the hint is advisory and must never turn into an error of its own.
    """
    if not callable(getattr(exc, "trailing_metadata", None)):
        return None, "", ()
    try:
        # Duck-typed: grpc.aio's AioRpcError has a Call's code/details/trailing_metadata
        # without being a grpc.Call, and from_call reads only those.
        status = rpc_status.from_call(cast("grpc.Call", exc))
    except Exception:
        return None, "", ()
    retry_after, quota, missing = None, "", []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = info.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            quota = failure.violations[0].subject if failure.violations else ""
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            precondition = error_details_pb2.PreconditionFailure()
            detail.Unpack(precondition)
            missing += _missing(precondition)
    return retry_after, quota, tuple(missing)


def map_rpc_error(exc: grpc.RpcError, *, task_id: str | None = None) -> ZakoError:
    """Translate a failed call into the most specific SDK error, with `exc` as its cause.

    Pass `task_id` for calls that carry one task (Run): then statuses that judge the task
    (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, …) become `TaskRejected` subclasses.

    >>> try:
    ...     await stub.Stats(request)
    ... except grpc.RpcError as exc:
    ...     raise map_rpc_error(exc) from exc
    """
    # A bare grpc.RpcError need not be a Call; be defensive about code()/details().
    code_of = getattr(exc, "code", None)
    details_of = getattr(exc, "details", None)
    code = code_of() if callable(code_of) else None
    details = (details_of() if callable(details_of) else None) or ""
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    error: ZakoError
    retry_after, quota, missing = _rich_details(exc) if task_id is not None else (None, "", ())
    # UNAVAILABLE on a task-carrying call is a rejection only when the server said so
    # (with a RetryInfo: it is draining); bare, it is the transport failing, and then the
    # task may or may not have reached a worker.
    if task_id is not None and (
        code in _REJECTION or (code is grpc.StatusCode.UNAVAILABLE and retry_after is not None)
    ):
        error = rejection_error(
            code,
            details,
            task_id=task_id,
            retry_after=retry_after,
            quota=quota,
            missing_blobs=missing,
        )
    else:
        error = _TRANSPORT.get(code, RPCError)(details, code=code)
    error.__cause__ = exc
    return error
