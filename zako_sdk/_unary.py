"""The unary Run path: one Run call per attempt, with the task's tree sent first.

    run_unary ──▶ Cluster.pick (_replicas.py) ──▶ Uploads.ready ──▶ Run ──▶ outcome_of_run
        ▲ rejected for capacity, or never sent: plan_retry ──▶ next_lane (maybe another replica)
        └─ rejected for missing blobs (evicted since the upload): forget them, same replica

Its own concern because it is the other way a task can travel: no Submit stream (logs
arrive with the result), so none of `_stream.py` and `_placement.py`, yet the same lanes,
uploads and retry decisions. `AsyncClient.run_unary()` prepares and checks the task and
hands it here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import grpc

from zako_sdk._outcomes import Outcome, outcome_of_run, unwrap
from zako_sdk._placement import MISSING_BLOB_ROUNDS, Plan
from zako_sdk._replicas import Cluster, Lane
from zako_sdk._retries import plan_retry
from zako_sdk._uploads import BlobRefused, Uploads
from zako_sdk.errors import TaskRejected, Unavailable, ZakoError, map_rpc_error
from zako_sdk.models import Result, Retry
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import ModuleTree

__all__ = ["run_unary"]


async def run_unary(
    cluster: Cluster,
    uploads: Uploads,
    task: pb.Task,
    task_plan: Plan | None,
    *,
    metadata: tuple[tuple[str, str], ...],
    retry: Retry | None,
    check_open: Callable[[], None],
) -> Result:
    """Run `task` through unary Run calls until it ends or may not be retried; its Result,
    or raise its error. `check_open` raises once the client is closed (between attempts)."""
    tree = None if task_plan is None else task_plan.tree
    route = None if task_plan is None else task_plan.route
    if route is not None:
        lane = cluster.pick(await cluster.route_lanes(), route=route)
    else:
        lane = cluster.pick(await cluster.lanes())
    attempt, missing_rounds = 1, 0
    while True:
        outcome, sent = await _run_once(lane, task, tree, uploads=uploads, metadata=metadata)
        if (
            isinstance(outcome, TaskRejected)
            and outcome.missing_blobs
            and tree is not None
            and missing_rounds < MISSING_BLOB_ROUNDS
        ):  # evicted since the upload: send them again, to the same replica
            missing_rounds += 1
            uploads.forget(lane.replica, outcome.missing_blobs)
            continue
        plan = plan_retry(retry, attempt, outcome, sent=sent, rand=random.random())
        if plan is None:
            return unwrap(outcome)
        cluster.cool(lane, plan.cooldown)
        if isinstance(outcome, Unavailable) and not sent:
            cluster.unreachable(lane)
        lane = await cluster.next_lane(plan.delay, avoid=lane, route=route)
        attempt += 1
        check_open()


async def _run_once(
    lane: Lane,
    task: pb.Task,
    tree: ModuleTree | None = None,
    *,
    uploads: Uploads,
    metadata: tuple[tuple[str, str], ...],
) -> tuple[Outcome, bool]:
    """One Run call: the outcome, and whether the task may have left this client."""
    if not await lane.replica.ready():
        return Unavailable(
            f"cannot connect to {lane.replica.target}", code=grpc.StatusCode.UNAVAILABLE
        ), False
    try:
        await uploads.ready(lane.replica, task, tree)
    except ZakoError as error:
        return error, False
    except BlobRefused as refused:
        return refused.for_task(task.id), False
    try:
        response = await lane.replica.stub.Run(pb.RunRequest(task=task), metadata=metadata)
    except grpc.RpcError as exc:
        return map_rpc_error(exc, task_id=task.id), True
    return outcome_of_run(response), True
