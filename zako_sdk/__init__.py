"""Zako SDK: run JavaScript on a Zako server from Python.

    import zako_sdk

    with zako_sdk.Client("127.0.0.1:50051") as client:
        result = client.run("module.exports = (x) => x * 2", input=21)
        print(result.value)  # 42

    async with zako_sdk.AsyncClient() as client:
        results = await client.batch(zako_sdk.TaskSpec(src, input=n) for n in range(100))

    # several replicas (or "dns:///zako-headless:50051"); refused tasks go elsewhere
    zako_sdk.Client(["zako-0:50051", "zako-1:50051"], retry=zako_sdk.Retry(attempts=5))

`AsyncClient` is the core; `Client` is its blocking face. Errors are in `zako_sdk.errors`
(all re-exported here); value objects in `zako_sdk.models`.
"""

from zako_sdk._sync import Client, SyncTaskHandle
from zako_sdk.client import AsyncClient, TaskHandle
from zako_sdk.errors import (
    ClientClosed,
    DeadlineExceeded,
    InvalidTask,
    Overloaded,
    PermissionDenied,
    RPCError,
    TaskCancelled,
    TaskError,
    TaskFailed,
    TaskRejected,
    TaskTimeout,
    TransportError,
    Unauthenticated,
    Unavailable,
    ZakoError,
)
from zako_sdk.models import (
    USE_CLIENT_DEFAULT,
    ClusterStats,
    HeapUsage,
    JsError,
    LogLine,
    Resources,
    Result,
    Retry,
    TaskSpec,
    Timings,
    UseClientDefault,
)

__all__ = [
    "USE_CLIENT_DEFAULT",
    "AsyncClient",
    "Client",
    "ClientClosed",
    "ClusterStats",
    "DeadlineExceeded",
    "HeapUsage",
    "InvalidTask",
    "JsError",
    "LogLine",
    "Overloaded",
    "PermissionDenied",
    "RPCError",
    "Resources",
    "Result",
    "Retry",
    "SyncTaskHandle",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskHandle",
    "TaskRejected",
    "TaskSpec",
    "TaskTimeout",
    "Timings",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "UseClientDefault",
    "ZakoError",
]
