"""The gRPC face of the server: `zako.v1.Executor` on grpc.aio.

    Submit ─▶ identify ─▶ SubmitStream (stream.py): reader, in-band cancels, outbox
                            │ accept: validate ─▶ engine.submit    reject: Rejected event
    Run, Cancel, BroadcastGC, Stats, Capabilities ─▶ identify ─▶ engine / pool ─▶ reply
    FindMissingBlobs, BatchUpdateBlobs, WriteBlob ─▶ identify ─▶ blobs.py ─▶ the store

This is the one module that maps the server's errors to status codes (`_abort`, and
`rejected_event` for a stream's Rejected events), so the rest of the server stays free
of gRPC statuses. Errors inside a task never become an RPC status: they are the task's
terminal event.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
import uuid
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any, NoReturn

import grpc
import psutil
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.server.blobs import Blobs
from zako_server.server.cas import ContentStore
from zako_server.server.decoding import Refused, lenient
from zako_server.server.engine import Engine
from zako_server.server.errors import (
    BlobRejection,
    DuplicateTask,
    InternalFault,
    MissingBlobs,
    PermissionDenied,
    TaskNotFound,
    TaskRejection,
    ZakoServerError,
)
from zako_server.server.events import duration, heap_usage, timestamp
from zako_server.server.records import Emit, Gate
from zako_server.server.reports import capabilities_reply, stats_reply
from zako_server.server.security import Authenticator, Identity
from zako_server.server.settings import Settings
from zako_server.server.stream import SubmitStream
from zako_server.server.trees import TreeMemo
from zako_server.server.validation import validate

log = logging.getLogger("zako.service")


def server_version() -> str:
    try:
        return metadata.version("zako")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def status_code(exc: ZakoServerError) -> grpc.StatusCode:
    """The gRPC status of a server error, looked up by the name its class carries."""
    return grpc.StatusCode[exc.code]


def rpc_code(exc: ZakoServerError) -> code_pb2.Code.ValueType:
    """The same status as a google.rpc.Code number (for Rejected events and Status)."""
    return code_pb2.Code.Value(exc.code)


def rejected_event(task_id: str, exc: TaskRejection) -> pb.SubmitResponse:
    """The Rejected event a Submit stream gets instead of an RPC status."""
    rejected = pb.Rejected(
        code=rpc_code(exc), message=exc.message, field=exc.field, quota=exc.quota
    )
    if isinstance(exc, MissingBlobs):
        for hash_, size in exc.missing:
            rejected.missing_blobs.add(hash=hash_, size_bytes=size)
    if exc.retry_after is not None:
        rejected.retry_after.CopyFrom(duration(exc.retry_after))
    return pb.SubmitResponse(task_id=task_id, time=timestamp(time.time()), rejected=rejected)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: ZakoServerError) -> NoReturn:
    """The single place a server error becomes an RPC status (with RetryInfo when useful)."""
    code = status_code(exc)
    message = exc.message
    details: list[Message] = []  # google.rpc error details, packed into Any below
    retry_after = exc.retry_after if isinstance(exc, TaskRejection) else None
    if retry_after is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=duration(retry_after)))
    field = exc.field if isinstance(exc, TaskRejection | BlobRejection) else ""
    if field:  # as the stream's Rejected.field: which field to fix (#12)
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    quota = exc.quota if isinstance(exc, TaskRejection) else ""
    if quota:
        exceeded = error_details_pb2.QuotaFailure.Violation(subject=quota, description=message)
        details.append(error_details_pb2.QuotaFailure(violations=[exceeded]))
    if isinstance(exc, MissingBlobs):  # as the stream's Rejected.missing_blobs
        missing = [
            error_details_pb2.PreconditionFailure.Violation(
                type="MISSING", subject=f"blobs/{hash_}/{size}"
            )
            for hash_, size in exc.missing
        ]
        details.append(error_details_pb2.PreconditionFailure(violations=missing))
    if details:
        packed = []
        for detail in details:
            any_detail = any_pb2.Any()
            any_detail.Pack(detail)
            packed.append(any_detail)
        status = status_pb2.Status(code=rpc_code(exc), message=message, details=packed)
        await context.abort_with_status(rpc_status.to_status(status))
    await context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort always raises


def _refusing(service: ExecutorService, method: Any, carries_task: bool) -> Any:
    """A unary handler that answers a refused request frame with its status (a task's
    refusal is counted as the task's rejection, for its tenant)."""

    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Refused):
            if carries_task:
                tenant = (await service._identify(context)).tenant
                service.engine.count_rejection(request.error, tenant)
            await _abort(context, request.error)
        return await method(request, context)

    return handler


def _message_class(descriptor: Any) -> Any:
    """The generated class of a request or response (executor.proto's or cas.proto's)."""
    module = cas_pb2 if descriptor.file.name.endswith("cas.proto") else pb
    return getattr(module, descriptor.name)


def add_to_server(service: ExecutorService, server: grpc.aio.Server) -> None:
    """Register zako.v1.Executor as the generated add_ExecutorServicer_to_server does,
    but with request deserializers that never raise (see decoding.Refused)."""
    limit = service.settings.max_message_bytes
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Executor"].methods:
        request_type = _message_class(method.input_type)
        response_type = _message_class(method.output_type)
        implementation = getattr(service, method.name)
        if method.client_streaming and not method.server_streaming:  # WriteBlob
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                implementation,
                request_deserializer=lenient(request_type, limit),
                response_serializer=response_type.SerializeToString,
            )
        elif method.client_streaming:  # Submit: its reader turns the frame into a rejection
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                implementation,
                request_deserializer=lenient(request_type, limit),
                response_serializer=response_type.SerializeToString,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _refusing(service, implementation, method.name == "Run"),
                request_deserializer=lenient(request_type, limit),
                response_serializer=response_type.SerializeToString,
            )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("zako.v1.Executor", handlers),)
    )


class ExecutorService(pb_grpc.ExecutorServicer):
    """Implements every RPC of zako.v1.Executor on top of the Engine."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        authenticator: Authenticator | None = None,
        store: ContentStore | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        # The content-addressed store: blobs tasks name by digest (cas.py).
        self.store = store or ContentStore.from_settings(settings)
        self.blobs = Blobs(self.store)
        # Checked and resolved ModuleTrees: a repeated tree validates in O(1) (trees.py).
        self.trees = TreeMemo()
        self.auth = authenticator or Authenticator()
        self._process = psutil.Process()
        self.started_at = time.time()
        self.draining = False

    def versions(self) -> pb.VersionInfo:
        return pb.VersionInfo(
            server=server_version(),
            v8=self.engine.pool.v8_version,
            mini_racer=self.engine.pool.mini_racer_version,
            python=platform.python_version(),
            protocol="zako.v1",
        )

    async def _identify(
        self, context: grpc.aio.ServicerContext[Any, Any], admin: bool = False
    ) -> Identity:
        """The caller, or the call ends with UNAUTHENTICATED / PERMISSION_DENIED."""
        try:
            identity = self.auth.identify(context.invocation_metadata())
            if admin and not identity.is_admin:
                raise PermissionDenied("this call needs the admin role")
        except ZakoServerError as exc:
            await _abort(context, exc)
        return identity

    def _accept(
        self,
        task: pb.Task,
        owner: object,
        emit: Emit,
        context: grpc.aio.ServicerContext[Any, Any],
        tenant: str,
        gate: Gate | None = None,
    ) -> pb.SubmitResponse | str:
        """Validate and submit: the accepted task's id, or the Rejected event to send."""
        if not task.id:
            # Assigned here, not in validation, so that even a rejection carries an id of
            # its own; first events arrive in submission order for clients to match them.
            task.id = uuid.uuid4().hex
        try:
            job = self._validate(task, context, tenant)
            self.engine.submit(job, owner, emit, tenant, gate)
            return job.task_id
        except TaskRejection as exc:
            self.engine.count_rejection(exc, tenant)
            # A duplicate of a task live on this stream is rejected without an id: the id
            # is the live task's, whose own terminal event the client keyed by id awaits.
            # (Another stream's client never saw that task: its rejection keeps the id.)
            same = isinstance(exc, DuplicateTask) and exc.same_stream
            return rejected_event("" if same else task.id, exc)

    def _validate(
        self, task: pb.Task, context: grpc.aio.ServicerContext[Any, Any], tenant: str
    ) -> Any:
        """`validate`, with the last-resort guard: whatever fault one task's input finds
        in validation becomes that task's INTERNAL rejection, never the stream's end."""
        try:
            return validate(
                task,
                self.settings,
                deadline_s=context.time_remaining(),
                tenant=tenant,
                store=self.store,
                trees=self.trees,
            )
        except TaskRejection:
            raise
        except Exception as exc:
            log.exception(
                "internal error validating task %s",
                task.id,
                extra={"task_id": task.id, "tenant": tenant},
            )
            raise InternalFault(
                f"internal server error while validating the task: {type(exc).__name__}"
            ) from exc

    async def Submit(
        self,
        request_iterator: AsyncIterator[pb.SubmitRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.SubmitResponse]:
        tenant = (await self._identify(context)).tenant

        def accept(task: pb.Task, owner: object, emit: Emit, gate: Gate) -> pb.SubmitResponse | str:
            return self._accept(task, owner, emit, context, tenant, gate)

        stream = SubmitStream(self.settings, self.engine, tenant, accept, rejected_event)
        # aclosing: an early end of this call closes the stream's own generator at once,
        # so its reader stops and its unfinished tasks are cancelled now, not at GC.
        async with contextlib.aclosing(stream.events(request_iterator)) as events:
            async for event in events:
                yield event

    async def Run(
        self,
        request: pb.RunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.RunResponse:
        # Bounded as a task's logs are (lines and bytes, plus the worker's marker line),
        # whatever reaches here: the response is built once, in memory, at the end.
        logs: list[pb.LogLine] = []
        max_lines = self.settings.max_log_lines + 1
        room = self.settings.max_log_bytes + 4096
        dropped = 0

        def emit(event: pb.SubmitResponse) -> None:
            nonlocal room, dropped
            if event.WhichOneof("event") != "log":
                return
            more = list(event.log.more)
            del event.log.more[:]
            for line in (event.log, *more):
                size = len(line.message)
                if len(logs) >= max_lines or size > room:
                    dropped += 1
                    continue
                room -= size
                logs.append(line)

        owner = object()
        tenant = (await self._identify(context)).tenant
        try:
            job = self._validate(request.task, context, tenant)
            # Run in this call's own task (see Engine.run): the task has ended on return.
            record = await self.engine.run(job, owner, emit, tenant)
        except TaskRejection as exc:
            self.engine.count_rejection(exc, tenant)
            await _abort(context, exc)
        terminal = record.terminal
        assert terminal is not None
        response = pb.RunResponse(task_id=record.task_id)
        kind = terminal.WhichOneof("event")
        getattr(response, kind).CopyFrom(getattr(terminal, kind))
        # Only settings with max_result_bytes + max_log_bytes near the message limit
        # need this: keep the first lines that fit, count the rest as dropped.
        room = self.settings.max_message_bytes - response.ByteSize() - 1024
        kept = 0
        for line in logs:
            room -= line.ByteSize() + 8
            if room < 0:
                break
            kept += 1
        response.logs.extend(logs[:kept])
        response.logs_dropped = record.logs_dropped + dropped + len(logs) - kept
        return response

    async def Cancel(
        self,
        request: pb.CancelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.CancelResponse:
        identity = await self._identify(context)
        try:
            previous = self.engine.cancel(
                request.task_id,
                request.reason or "cancelled by request",
                tenant=identity.tenant,
                any_tenant=identity.is_admin,
            )
        except TaskNotFound as exc:
            await _abort(context, exc)
        return pb.CancelResponse(previous_state=previous)  # type: ignore[arg-type]

    async def BroadcastGC(
        self,
        request: pb.BroadcastGCRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.BroadcastGCResponse:
        await self._identify(context, admin=True)
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None else self.settings.max_timeout + 5
        replies = await self.engine.pool.broadcast_gc(timeout)
        response = pb.BroadcastGCResponse()
        for worker, reply in replies:
            before, after = reply.before, reply.after
            response.workers.add(
                worker_id=worker.id,
                before=heap_usage(before),
                after=heap_usage(after),
                rss_before_bytes=reply.rss_before,
                rss_after_bytes=reply.rss_after,
            )
            response.total_freed_bytes += max(before.used - after.used, 0)
        return response

    async def Stats(
        self,
        request: pb.StatsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.StatsResponse:
        identity = await self._identify(context)
        return stats_reply(
            self.engine,
            self.settings,
            identity,
            self.started_at,
            self._process,
            self.versions(),
            cas=self.store,
        )

    async def Capabilities(
        self,
        request: pb.CapabilitiesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.CapabilitiesResponse:
        await self._identify(context)
        return capabilities_reply(self.settings, self.versions())

    async def FindMissingBlobs(
        self,
        request: cas_pb2.FindMissingBlobsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cas_pb2.FindMissingBlobsResponse:
        tenant = (await self._identify(context)).tenant
        try:
            return self.blobs.find_missing(tenant, request)
        except BlobRejection as exc:
            await _abort(context, exc)

    async def BatchUpdateBlobs(
        self,
        request: cas_pb2.BatchUpdateBlobsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cas_pb2.BatchUpdateBlobsResponse:
        tenant = (await self._identify(context)).tenant
        return await self.blobs.batch_update(tenant, request)

    async def WriteBlob(
        self,
        request_iterator: AsyncIterator[cas_pb2.WriteBlobRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cas_pb2.WriteBlobResponse:
        tenant = (await self._identify(context)).tenant
        try:
            return await self.blobs.write(tenant, request_iterator)
        except (BlobRejection, TaskRejection) as exc:  # TaskRejection: a refused frame
            await _abort(context, exc)
