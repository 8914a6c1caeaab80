"""Worker affinity as pure logic: which idle worker a task goes to."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from zako_server.protocol import ReuseKey, RunFrame, TaskContext
from zako_server.server.affinity import choose
from zako_server.server.worker_handle import WorkerState

A: ReuseKey = ("acme", "build", True)
B: ReuseKey = ("globex", "build", True)


@dataclass
class Fake:
    warm_key: ReuseKey | None = None
    state: WorkerState = "idle"


def frame(
    reuse: str | None, kind: str = "build", system_access: bool = False, max_tasks: int = 500
) -> RunFrame:
    context = TaskContext(kind, "t", {}, system_access)
    return RunFrame("t", "main.js", {"main.js": ""}, "", context, 1.0, 1, 1, 1, reuse, max_tasks)


def test_reuse_key_is_tenant_kind_and_hermeticity():
    assert frame("acme").reuse_key == ("acme", "build", True)
    assert frame("acme", "config").reuse_key == ("acme", "config", True)
    assert frame("acme", "config", system_access=True).reuse_key == ("acme", "config", False)


def test_a_fresh_isolate_task_has_no_key():
    assert frame(None).reuse_key is None
    assert frame("acme", max_tasks=0).reuse_key is None  # no isolate would be kept for it


def test_a_worker_warm_for_the_key_wins_even_when_not_longest_idle():
    assert choose([Fake(B), Fake(None), Fake(A)], A) == 2


def test_without_a_warm_match_a_cold_worker_is_taken_before_evicting_another_tenant():
    assert choose([Fake(B), Fake(None)], A) == 1


def test_with_only_other_tenants_warm_workers_the_longest_idle_is_taken():
    assert choose([Fake(B), Fake(("acme", "rule", True))], A) == 0


def test_a_fresh_isolate_task_spares_warm_workers():
    assert choose([Fake(A), Fake(None)], None) == 1
    assert choose([Fake(A), Fake(B)], None) == 0


@pytest.mark.parametrize("key", [A, None])
def test_workers_no_longer_idle_are_never_chosen(key):
    assert choose([Fake(A, state="dead"), Fake(None, state="stopping")], key) == -1
    assert choose([Fake(A, state="dead"), Fake(B)], key) == 1
    assert choose([], key) == -1
