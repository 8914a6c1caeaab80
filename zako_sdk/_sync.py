"""Client: the blocking face of AsyncClient.

    caller thread ── run_coroutine_threadsafe ──▶ private loop thread
                                                     └── AsyncClient (the only logic)

The sync client owns one daemon thread running an event loop with an AsyncClient on it,
and forwards each call there. So both faces share one implementation, one Submit stream
and one set of semantics; the cost is a thread hop per call (tens of microseconds),
small against a task's round trip. It works whether or not the caller's thread has an
event loop of its own, which matters for the CLI and for code called from async tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar, overload

import grpc

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

from zako_sdk._channel import DEFAULT_TARGET, Metadata
from zako_sdk._outcomes import Outcome, unwrap
from zako_sdk._stream import OnLog, TaskHandle
from zako_sdk.capabilities import Capabilities
from zako_sdk.client import DEFAULT_RETRY, AsyncClient
from zako_sdk.errors import ClientClosed, ZakoError
from zako_sdk.models import (
    CancelResult,
    ClusterStats,
    LogLine,
    Result,
    Retry,
    TaskOptions,
    TaskSpec,
)
from zako_sdk.stats import GCReport, Stats

__all__ = ["Client", "SyncTaskHandle"]

T = TypeVar("T")


class SyncTaskHandle:
    """A task in flight, seen from a blocking caller.

    handle = client.submit("module.exports = () => 42")
    result = handle.result(timeout=10)
    """

    def __init__(self, client: Client, handle: TaskHandle) -> None:
        self._client = client
        self._handle = handle

    @property
    def task_id(self) -> str:
        return self._handle.task_id

    @property
    def logs(self) -> list[LogLine]:
        """A snapshot of the lines printed so far (the live list belongs to the loop thread)."""
        return list(self._handle.logs)

    @property
    def worker_id(self) -> str | None:
        """The server's worker running the task, once it has started."""
        return self._handle.worker_id

    @property
    def replica(self) -> str | None:
        """The target the task was last sent to."""
        return self._handle.replica

    @property
    def attempts(self) -> int:
        """How many times the task was sent (more than 1 after retries)."""
        return self._handle.attempts

    def done(self) -> bool:
        return self._handle.done()

    def outcome(self, timeout: float | None = None) -> Outcome:
        """Block until the task ends; its Result or its error, returned rather than raised.

        TimeoutError if `timeout` seconds pass first; the task keeps running (cancel it
        explicitly if it is no longer wanted).
        """
        return self._client._call(self._handle.outcome, timeout=timeout)

    def result(self, timeout: float | None = None) -> Result:
        """Block until the task ends; its Result, or raise the task's error.

        TimeoutError if `timeout` seconds pass first, as for `outcome()`.
        """
        return unwrap(self.outcome(timeout))

    def cancel(self, reason: str = "") -> None:
        """Ask the server to cancel the task; `result()` then raises TaskCancelled."""
        self._client._call(lambda: self._handle.cancel(reason))

    def __repr__(self) -> str:
        return f"<SyncTaskHandle {self.task_id} {'done' if self.done() else 'pending'}>"


class Client:
    """Runs JavaScript on Zako servers, blocking; same options and semantics as AsyncClient.

        with Client("127.0.0.1:50051") as client:
            print(client.run("module.exports = (x) => x + 1", input=41).value)

        Client(["zako-0:50051", "zako-1:50051"], tenant="acme", retry=Retry(attempts=5))

    Safe to share between threads. `on_log` callbacks run on the client's own thread.
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
        # AsyncClient creates its channels on first use, i.e. on the loop thread: good.
        self._async = AsyncClient(
            target,
            timeout=timeout,
            call_timeout=call_timeout,
            metadata=metadata,
            credentials=credentials,
            options=options,
            max_in_flight=max_in_flight,
            retry=retry,
            tenant=tenant,
        )
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve_loop, name="zako-client", daemon=True)
        self._thread.start()

    def _serve_loop(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _call(self, factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run `factory()` on the loop thread and wait for it.

        The coroutine is made only once we know the loop will run it: making it first
        and then finding the client closed would leave a never-awaited coroutine.
        """

        async def call() -> T:
            return await factory()

        with self._lock:
            if self._closed:
                raise ClientClosed("this client is closed")
            future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the coroutine's own TimeoutError, not our wait running out
            raise TimeoutError(f"no result within {timeout} s") from None
        except concurrent.futures.CancelledError:
            raise ClientClosed("the client was closed during the call") from None
        finally:
            # A no-op once done; if we are leaving early (Ctrl-C, timeout) it stops the
            # coroutine, and run() turns that into an in-band cancel of the task.
            future.cancel()

    def run(
        self,
        source: str,
        *,
        on_log: OnLog | None = None,
        **options: Unpack[TaskOptions],
    ) -> Result:
        """Run one task and return its Result; raise if it fails.

        result = client.run("module.exports = (x) => x * 2", input=21)

        Like AsyncClient.run, it asks for the terminal event only unless told otherwise.
        """
        options.setdefault("terminal_only", True)
        spec = TaskSpec(source, **options)
        return self._call(lambda: self._async._run(spec, on_log))

    def run_unary(
        self,
        source: str,
        **options: Unpack[TaskOptions],
    ) -> Result:
        """Like `run()`, through the unary Run RPC.

        result = client.run_unary("module.exports = 1")
        """
        spec = TaskSpec(source, **options)
        return self._call(lambda: self._async._run_unary(spec))

    def submit(
        self,
        source: str,
        *,
        on_log: OnLog | None = None,
        **options: Unpack[TaskOptions],
    ) -> SyncTaskHandle:
        """Send a task now and return its handle without waiting for it.

        handle = client.submit("module.exports = () => 1")
        print(handle.result().value)
        """
        spec = TaskSpec(source, **options)
        return SyncTaskHandle(self, self._call(lambda: self._async._submit(spec, on_log)))

    @overload
    def batch(
        self, tasks: Iterable[TaskSpec], *, return_exceptions: Literal[False] = ...
    ) -> list[Result]: ...

    @overload
    def batch(
        self, tasks: Iterable[TaskSpec], *, return_exceptions: bool
    ) -> list[Result | ZakoError]: ...

    def batch(
        self, tasks: Iterable[TaskSpec], *, return_exceptions: bool = False
    ) -> list[Result] | list[Result | ZakoError]:
        """Run many tasks over one stream; results in input order (see AsyncClient.batch).

        results = client.batch([TaskSpec(src, input=n) for n in range(200)])
        """
        specs = list(tasks)
        return self._call(lambda: self._async.batch(specs, return_exceptions=return_exceptions))

    def cancel(self, task_id: str, reason: str = "") -> CancelResult:
        """Cancel a queued or running task by id: on the replica this client sent it to,
        else on whichever replica has it (see AsyncClient.cancel).

            client.cancel(task_id, "superseded")
        """
        return self._call(lambda: self._async.cancel(task_id, reason))

    def stats(self) -> Stats:
        """A snapshot of the (first) server. `client.stats().queue.depth`"""
        return self._call(self._async.stats)

    def stats_all(self) -> ClusterStats:
        """Stats of every replica and their sum. `client.stats_all().total.pool.busy`"""
        return self._call(self._async.stats_all)

    def gc(self) -> GCReport:
        """Collect garbage on every worker. `client.gc().total_freed_bytes`"""
        return self._call(self._async.gc)

    def capabilities(self) -> Capabilities:
        """What the server accepts. `client.capabilities().limits.max_timeout`"""
        return self._call(self._async.capabilities)

    @property
    def target(self) -> str:
        return self._async.target

    @property
    def targets(self) -> tuple[str, ...]:
        return self._async.targets

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the client and stop its thread; tasks in flight fail with ClientClosed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._async.aclose(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> Client:
        if self._closed:
            raise ClientClosed("this client is closed")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.target}{' closed' if self._closed else ''}>"
