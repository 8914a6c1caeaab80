"""Zako SDK: run JavaScript on a Zako server from Python.

    import zako_sdk

    with zako_sdk.Client("127.0.0.1:50051") as client:
        result = client.run("module.exports = (x) => x * 2", input=21)
        print(result.value)  # 42

    async with zako_sdk.AsyncClient() as client:
        results = await client.batch(zako_sdk.TaskSpec(src, input=n) for n in range(100))

    # several replicas (or "dns:///zako-headless:50051"); refused tasks go elsewhere
    zako_sdk.Client(["zako-0:50051", "zako-1:50051"], retry=zako_sdk.Retry(attempts=5))

    # a project's module tree, hashed once; each replica is sent its blobs once
    tree = zako_sdk.ModuleTree.of(Path("project"))
    client.run(source, modules=tree, entry_name="main.js")

`AsyncClient` is the core; `Client` is its blocking face. Errors are in `zako_sdk.errors`,
value objects of tasks in `zako_sdk.models`, and what a server says about itself (`Stats`,
`GCReport`, `Capabilities`, `quantile`) in `zako_sdk.stats`; all are re-exported here.
The clients take and return only these, never protobuf messages.

`zako_sdk.proto` is the public home of the code generated from `protos/zako/v1/` (the
`zako.v1` messages and the Executor stub, e.g. `from zako_sdk.proto.zako.v1 import
executor_pb2`): for talking gRPC directly, and for the server, which imports its wire
types from here rather than generating its own. It is regenerated, never hand-edited.
"""

from zako_sdk._sync import Client, SyncTaskHandle
from zako_sdk.capabilities import Capabilities
from zako_sdk.client import AsyncClient, TaskHandle
from zako_sdk.errors import (
    ClientClosed,
    DeadlineExceeded,
    InvalidTask,
    MessageTooLarge,
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
    CONTEXT_KINDS,
    CONTEXT_NAMES,
    USE_CLIENT_DEFAULT,
    CachePolicyName,
    CancelResult,
    ClusterStats,
    HeapUsage,
    JsError,
    LogLine,
    Resources,
    Result,
    Retry,
    TaskOptions,
    TaskSpec,
    TaskState,
    Timings,
    UseClientDefault,
)
from zako_sdk.stats import GCReport, Stats, quantile
from zako_sdk.trees import Digest, ModuleTree

__all__ = [
    "CONTEXT_KINDS",
    "CONTEXT_NAMES",
    "USE_CLIENT_DEFAULT",
    "AsyncClient",
    "CachePolicyName",
    "CancelResult",
    "Capabilities",
    "Client",
    "ClientClosed",
    "ClusterStats",
    "DeadlineExceeded",
    "Digest",
    "GCReport",
    "HeapUsage",
    "InvalidTask",
    "JsError",
    "LogLine",
    "MessageTooLarge",
    "ModuleTree",
    "Overloaded",
    "PermissionDenied",
    "RPCError",
    "Resources",
    "Result",
    "Retry",
    "Stats",
    "SyncTaskHandle",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskHandle",
    "TaskOptions",
    "TaskRejected",
    "TaskSpec",
    "TaskState",
    "TaskTimeout",
    "Timings",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "UseClientDefault",
    "ZakoError",
    "quantile",
]
