"""AsyncClient: the core of the SDK, on grpc.aio.

    submit() ──▶ StreamSet.place ──▶ a replica's Submit stream (one bidi stream each)
                                            │ events tagged by task id
    TaskHandle ◀── resolve / retry ◀────────┘

One long-lived Submit stream per replica carries every `submit()`/`run()`: tasks are
multiplexed by id and cancels go in-band, so a task costs one message, not a call.
With several replicas, a hermetic task goes to the replica its action digest ranks
first (rendezvous hashing, `_routing.py`: repeats find that replica's caches), others
round robin; one turned away for capacity is sent again elsewhere (`Retry`). A task's
module tree travels by digest, its blobs uploaded once per replica (`_uploads.py`).
The stream and the handles live in `_stream.py`, replicas in `_replicas.py`, placing
tasks on them in `_placement.py`. `batch()` opens streams of its own (`_batch.py`);
`run_unary()` takes the unary Run path (`_unary.py`); a cancel by id is routed in
`_cancel.py`; module trees are hashed off the loop (`_hashing.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, overload

import grpc

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

from zako_sdk._base import (
    ASK_LIMIT_ABOVE,
    MessageLimit,
    Prepared,
    channel_send_limit,
    check_request_size,
    prepare,
    request_bytes,
)
from zako_sdk._batch import run_batch
from zako_sdk._cancel import cancel_task
from zako_sdk._channel import DEFAULT_TARGET, Metadata, metadata_tuple
from zako_sdk._hashing import hashed, shared_trees
from zako_sdk._outcomes import unwrap
from zako_sdk._placement import Plan, StreamSet
from zako_sdk._replicas import Cluster
from zako_sdk._routing import action_key, routable
from zako_sdk._stream import OnLog, TaskHandle
from zako_sdk._sum import sum_stats
from zako_sdk._targets import parse_targets
from zako_sdk._unary import run_unary
from zako_sdk._uploads import Uploads
from zako_sdk.capabilities import Capabilities
from zako_sdk.errors import ClientClosed, ZakoError, map_rpc_error
from zako_sdk.models import CancelResult, ClusterStats, Result, Retry, TaskOptions, TaskSpec
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_sdk.stats import GCReport, Stats
from zako_sdk.trees import ModuleTree

__all__ = ["AsyncClient", "TaskHandle"]

DEFAULT_RETRY = Retry()


@contextlib.contextmanager
def _translate(task_id: str | None = None) -> Iterator[None]:
    """Where every unary call's grpc.RpcError becomes a ZakoError (httpx-style mapping)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise map_rpc_error(exc, task_id=task_id) from exc


class AsyncClient:
    """Runs JavaScript on Zako servers; the asyncio core of the SDK.

        async with AsyncClient("127.0.0.1:50051") as client:
            result = await client.run("module.exports = (x) => x + 1", input=41)
            assert result.value == 42

        AsyncClient(["zako-0:50051", "zako-1:50051"])    # or "zako-0:50051,zako-1:50051"
        AsyncClient("dns:///zako-headless.ns.svc:50051")  # every address of the name

    With several targets, tasks are spread round robin over the replicas (one channel and
    one shared Submit stream each); with a dns:/// name, gRPC's round_robin spreads them
    over its addresses. `retry` says how tasks a replica refused for capacity (or that
    could not be delivered) are resent, to another replica when there is one; None
    disables it. `tenant` sets the x-zako-tenant header the server's quotas count by.

    `timeout` is the default task timeout in seconds (None: the server's default);
    `call_timeout` bounds the small unary calls (cancel, stats, gc, capabilities).
    `max_in_flight` caps the tasks in flight per stream on this side: `submit()` waits for
    a slot (None: no cap here; the server rejects past its own `max_tasks_per_stream`).
    The gRPC channels are created on first use and belong to that event loop.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float | None = None,
        call_timeout: float | None = 60.0,
        metadata: Metadata | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Iterable[tuple[str, Any]] | None = None,
        max_in_flight: int | None = None,
        retry: Retry | None = DEFAULT_RETRY,
        tenant: str | None = None,
    ) -> None:
        self.targets = parse_targets(target)
        self.target = ",".join(self.targets)
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.retry = retry
        self._metadata = metadata_tuple(metadata, tenant)
        self._max_in_flight = max_in_flight
        options = list(options or ())
        self._cluster = Cluster(self.targets, credentials=credentials, options=options)
        self._uploads = Uploads(self._metadata, call_timeout)
        # The message limits a task is checked against before it is sent: the channel's
        # own, and the server's once Capabilities has told it (asked for on the first
        # task that might be over it).
        self._channel_limit = channel_send_limit(options)
        self._server_limit: MessageLimit | None = None
        self._asked_limit = False
        self._shared = self._stream_set()
        self._batches: set[StreamSet] = set()
        self._closed = False

    def _stream_set(self) -> StreamSet:
        return StreamSet(
            self._cluster,
            metadata=self._metadata,
            max_in_flight=self._max_in_flight,
            retry=self.retry,
            uploads=self._uploads,
        )

    def _prepare(self, spec: TaskSpec) -> tuple[pb.Task, Plan | None]:
        """The task's message and, when it has a tree or goes by its action digest, the
        Plan its placing needs (None for the usual plain task: nothing to do)."""
        prepared: Prepared = prepare(spec, default_timeout=self.timeout)
        task = prepared.task
        route = action_key(task) if self._cluster.routes and routable(task) else None
        if prepared.tree is None and route is None:
            return task, None
        return task, Plan(prepared.tree, route)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("this client is closed")

    async def _check_size(self, tasks: Sequence[pb.Task]) -> None:
        """Raise MessageTooLarge for a task over a known message limit (see _base)."""
        if not self._asked_limit and any(request_bytes(t) > ASK_LIMIT_ABOVE for t in tasks):
            self._asked_limit = True
            with contextlib.suppress(ZakoError):  # unknown: the server's refusal says it
                await self.capabilities()
        for task in tasks:
            check_request_size(task, (self._channel_limit, self._server_limit))

    async def _submit(self, spec: TaskSpec, on_log: OnLog | None = None) -> TaskHandle:
        task, plan = self._prepare(await hashed(spec))
        self._check_open()
        await self._check_size((task,))
        handle = self._shared.admit(task, on_log, plan)
        try:
            await self._shared.place(handle)
        except BaseException:
            handle._cancel_nowait("the caller stopped waiting")
            raise
        return handle

    async def _run(self, spec: TaskSpec, on_log: OnLog | None = None) -> Result:
        handle = await self._submit(spec, on_log)
        return await handle._wait()  # cancelling this coroutine cancels the task

    async def _run_unary(self, spec: TaskSpec) -> Result:
        task, task_plan = self._prepare(await hashed(spec))
        self._check_open()
        await self._check_size((task,))
        return await run_unary(
            self._cluster,
            self._uploads,
            task,
            task_plan,
            metadata=self._metadata,
            retry=self.retry,
            check_open=self._check_open,
        )

    async def run(
        self,
        source: str,
        *,
        on_log: OnLog | None = None,
        **options: Unpack[TaskOptions],
    ) -> Result:
        """Run one task on the shared stream and return its Result; raise if it fails.

            result = await client.run("module.exports = (x) => x * 2", input=21)
            result.timings.warm_isolate   # True: it reused a warm isolate of this tenant

        The keyword options are TaskSpec's (`input`, `context`, `timeout`, `modules`, …;
        see TaskOptions). Cancelling the awaiting coroutine cancels the task on the
        server. `fresh_isolate=True` asks for an isolate no other task used.

        It asks for the terminal event only (`terminal_only`, unless given): a Result
        needs nothing from the accepted and started events, its worker included, and
        each is a message the server builds and this client reads.
        """
        options.setdefault("terminal_only", True)
        return await self._run(
            TaskSpec(source, **options),
            on_log,
        )

    async def run_unary(
        self,
        source: str,
        **options: Unpack[TaskOptions],
    ) -> Result:
        """Like `run()`, through the unary Run RPC (no stream; logs arrive with the result).

        result = await client.run_unary("module.exports = 1")
        """
        return await self._run_unary(TaskSpec(source, **options))

    async def submit(
        self,
        source: str,
        *,
        on_log: OnLog | None = None,
        **options: Unpack[TaskOptions],
    ) -> TaskHandle:
        """Send a task on the shared stream now and return its handle without waiting.

            handle = await client.submit("module.exports = () => 1", on_log=print)
            result = await handle

        `on_log` is called with each LogLine as it arrives; it must not block.
        """
        return await self._submit(
            TaskSpec(source, **options),
            on_log,
        )

    @overload
    async def batch(
        self, tasks: Iterable[TaskSpec], *, return_exceptions: Literal[False] = ...
    ) -> list[Result]: ...

    @overload
    async def batch(
        self, tasks: Iterable[TaskSpec], *, return_exceptions: bool
    ) -> list[Result | ZakoError]: ...

    async def batch(
        self, tasks: Iterable[TaskSpec], *, return_exceptions: bool = False
    ) -> list[Result] | list[Result | ZakoError]:
        """Run many tasks over one Submit stream; results in input order.

            results = await client.batch(TaskSpec(src, input=n) for n in range(200))

        With `return_exceptions=False` the first failure (in input order, among those
        known when one arrives) is raised and the rest of the batch is cancelled; with
        True, each failed task's error takes its place in the list.

        The batch gets streams of its own (one per replica; tasks go round robin), so
        that giving up on it is one act: closing them makes the servers cancel whatever
        of the batch is still queued or running, and nothing else of this client's.
        """
        specs = list(tasks)
        if not specs:
            return []
        if any(s.modules is not None and not isinstance(s.modules, ModuleTree) for s in specs):
            specs = await asyncio.to_thread(shared_trees, specs)
        prepared = [self._prepare(spec) for spec in specs]
        self._check_open()
        await self._check_size([task for task, _ in prepared])
        outcomes = await run_batch(
            self._stream_set(),
            prepared,
            return_exceptions=return_exceptions,
            batches=self._batches,
        )
        if return_exceptions:
            return outcomes
        return [unwrap(outcome) for outcome in outcomes]

    async def _unary(
        self, method: str, request: Any, stub: pb_grpc.ExecutorStub | None = None
    ) -> Any:
        self._check_open()
        stub = stub or self._cluster.replicas[0].stub
        with _translate():
            return await getattr(stub, method)(
                request, timeout=self.call_timeout, metadata=self._metadata
            )

    def _find(self, task_id: str) -> TaskHandle | None:
        for streams in (self._shared, *self._batches):
            handle = streams.handles.get(task_id)
            if handle is not None and not handle.done():
                return handle
        return None

    async def cancel(self, task_id: str, reason: str = "") -> CancelResult:
        """Cancel a queued or running task by id (unary Cancel; RPCError NOT_FOUND if none).

            await client.cancel("3f2a…", "superseded")

        A task this client sent goes to the replica it was sent to; any other id is asked
        of every replica, and the cancel succeeds if one of them had it. A task waiting
        here between attempts is cancelled on the spot (previous state QUEUED).
        """
        return CancelResult.from_proto(await self._cancel(task_id, reason))

    async def _cancel(self, task_id: str, reason: str) -> pb.CancelResponse:
        return await cancel_task(
            self._find(task_id), task_id, reason, unary=self._unary, fan_out=self._fan_out
        )

    async def _fan_out(self, method: str, request: Any) -> dict[str, Any]:
        self._check_open()
        return await self._cluster.fan_out(
            method, request, metadata=self._metadata, timeout=self.call_timeout
        )

    async def stats(self) -> Stats:
        """A snapshot of the pool, queue and task counters of the first target (see
        `stats_all()` for every replica). `(await client.stats()).pool.busy`"""
        return Stats.from_proto(await self._unary("Stats", pb.StatsRequest()))

    async def stats_all(self) -> ClusterStats:
        """Stats of every replica (a dns:/// name: of every address) and their sum.

            cluster = await client.stats_all()
            print(cluster.total.queue.depth, sorted(cluster.replicas))

        Replicas that do not answer are listed in `errors`; if none answers, the first
        error is raised.
        """
        answers = await self._fan_out("Stats", pb.StatsRequest())
        replicas = {k: v for k, v in answers.items() if isinstance(v, pb.StatsResponse)}
        errors = {k: v for k, v in answers.items() if isinstance(v, ZakoError)}
        if not replicas:
            raise next(iter(errors.values()))
        return ClusterStats(
            replicas={k: Stats.from_proto(v) for k, v in replicas.items()},
            total=Stats.from_proto(sum_stats(list(replicas.values()))),
            errors=errors,
        )

    async def gc(self) -> GCReport:
        """Collect garbage on every worker of the first target.
        `(await client.gc()).total_freed_bytes`"""
        return GCReport.from_proto(await self._unary("BroadcastGC", pb.BroadcastGCRequest()))

    async def capabilities(self) -> Capabilities:
        """Limits, context kinds, priorities, versions (of the first target).
        `(await client.capabilities()).limits.max_timeout`"""
        answer = await self._unary("Capabilities", pb.CapabilitiesRequest())
        if answer.limits.max_message_bytes > 0:
            self._server_limit = MessageLimit(
                answer.limits.max_message_bytes, "the server's message limit"
            )
        return Capabilities.from_proto(answer)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the client: tasks still in flight fail with ClientClosed and the server
        cancels them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        sets, self._batches = [self._shared, *self._batches], set()
        for streams in sets:
            await streams.aclose(ClientClosed("the client was closed"))
        await self._cluster.aclose()

    async def __aenter__(self) -> AsyncClient:
        if self._closed:
            raise ClientClosed("this client is closed")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.target}{' closed' if self._closed else ''}>"
