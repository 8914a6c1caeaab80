"""The error tree and the one status → error table."""

from __future__ import annotations

import pickle

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from zako_sdk import (
    ClientClosed,
    DeadlineExceeded,
    InvalidTask,
    JsError,
    Overloaded,
    PermissionDenied,
    RPCError,
    TaskError,
    TaskFailed,
    TaskRejected,
    TransportError,
    Unauthenticated,
    Unavailable,
    ZakoError,
)
from zako_sdk.errors import map_rpc_error, status_code


class FakeRpcError(grpc.RpcError):
    """What grpc raises: an RpcError that is also a Call with code() and details()."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.NOT_FOUND, RPCError),
        (grpc.StatusCode.INTERNAL, RPCError),
        (grpc.StatusCode.INVALID_ARGUMENT, RPCError),  # not about a task on a plain call
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RPCError),
    ],
)
def test_call_statuses_map_to_transport_errors(code, cls):
    exc = FakeRpcError(code, "details here")
    error = map_rpc_error(exc)
    assert type(error) is cls and isinstance(error, TransportError)
    assert error.code is code and error.details == "details here"
    assert error.__cause__ is exc
    assert str(error) == f"{code.name}: details here"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidTask),
        (grpc.StatusCode.FAILED_PRECONDITION, InvalidTask),
        (grpc.StatusCode.ALREADY_EXISTS, InvalidTask),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, Overloaded),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),  # on a call, UNAVAILABLE stays transport
    ],
)
def test_statuses_of_a_task_carrying_call_judge_the_task(code, cls):
    error = map_rpc_error(FakeRpcError(code, "task.source: empty"), task_id="t9")
    assert type(error) is cls
    if isinstance(error, TaskRejected):
        assert error.task_id == "t9" and error.message == "task.source: empty"
        assert error.retry_after is None


def test_a_bare_rpc_error_without_a_call_maps_to_unknown():
    error = map_rpc_error(grpc.RpcError("odd"))
    assert type(error) is RPCError and error.code is grpc.StatusCode.UNKNOWN


def test_raise_from_keeps_the_grpc_error_as_cause():
    exc = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed")
    with pytest.raises(Unavailable) as info:
        try:
            raise exc
        except grpc.RpcError as caught:
            raise map_rpc_error(caught) from caught
    assert info.value.__cause__ is exc


def test_status_code_numbers():
    assert status_code(8) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_code(999) is grpc.StatusCode.UNKNOWN


def test_the_three_families_stay_apart():
    assert issubclass(ClientClosed, RuntimeError) and issubclass(ClientClosed, ZakoError)
    assert not issubclass(Overloaded, TransportError)
    assert not issubclass(Unavailable, TaskError)
    assert issubclass(InvalidTask, TaskRejected) and issubclass(TaskRejected, TaskError)


def test_task_failed_shows_the_stack_once():
    js = JsError("Error", "boom", "Error: boom\n    at main.js:1:7", "main.js", 1, 7)
    assert str(TaskFailed(task_id="t", reason="JS_ERROR", js_error=js)) == js.stack
    bare = JsError("Error", "boom", "    at main.js:1:7")
    assert str(bare) == "Error: boom\n    at main.js:1:7"
    assert str(JsError("Error", "boom")) == "Error: boom"


def test_errors_survive_pickling_between_processes():
    js = JsError("Error", "boom", "Error: boom\n    at main.js:1:7", "main.js", 1, 7)
    for error in [
        TaskFailed(task_id="t", reason="JS_ERROR", js_error=js),
        Overloaded("full", task_id="t", code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=2.0),
        Unavailable("down", code=grpc.StatusCode.UNAVAILABLE),
        ClientClosed("closed"),
    ]:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


class RichRpcError(FakeRpcError):
    """A failed call whose trailers carry a google.rpc.Status, as the server sends them."""

    def __init__(self, code: grpc.StatusCode, details: str, *rich: object) -> None:
        super().__init__(code, details)
        packed = []
        for message in rich:
            detail = any_pb2.Any()
            detail.Pack(message)
            packed.append(detail)
        status = status_pb2.Status(code=code.value[0], message=details, details=packed)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


def test_retry_info_and_quota_failure_reach_the_rejection():
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=500_000_000))
    quota = error_details_pb2.QuotaFailure(
        violations=[error_details_pb2.QuotaFailure.Violation(subject="tenant/acme/max_queued")]
    )
    error = map_rpc_error(
        RichRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "full", retry, quota), task_id="t1"
    )
    assert type(error) is Overloaded
    assert error.retry_after == 0.5 and error.quota == "tenant/acme/max_queued"


def test_unavailable_with_retry_info_on_run_is_a_draining_rejection():
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1))
    error = map_rpc_error(
        RichRpcError(grpc.StatusCode.UNAVAILABLE, "draining", retry), task_id="t1"
    )
    assert type(error) is Overloaded and error.code is grpc.StatusCode.UNAVAILABLE
    assert error.retry_after == 1.0
    # The same status on a call that carries no task stays a transport error.
    assert type(map_rpc_error(RichRpcError(grpc.StatusCode.UNAVAILABLE, "x", retry))) is (
        Unavailable
    )


def test_a_mismatched_status_blob_is_ignored():
    exc = RichRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "full")
    exc._details = "something else"  # grpc_status refuses a blob that disagrees
    error = map_rpc_error(exc, task_id="t1")
    assert type(error) is Overloaded and error.retry_after is None
