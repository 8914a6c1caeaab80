"""Worker affinity as pure logic: which idle worker a task goes to."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from zako_server.protocol import ReuseKey
from zako_server.server.affinity import choose, reuse_key

A: ReuseKey = ("acme", "build", True)
B: ReuseKey = ("globex", "build", True)


@dataclass
class Fake:
    warm_key: ReuseKey | None = None
    state: str = "idle"


def frame(reuse: str | None, kind: str = "build", system_access: bool = False) -> dict:
    return {"reuse": reuse, "context": {"kind": kind, "system_access": system_access}}


def test_reuse_key_is_tenant_kind_and_hermeticity():
    assert reuse_key(frame("acme")) == ("acme", "build", True)
    assert reuse_key(frame("acme", "config")) == ("acme", "config", True)
    assert reuse_key(frame("acme", "config", system_access=True)) == ("acme", "config", False)


def test_a_fresh_isolate_task_has_no_key():
    assert reuse_key(frame(None)) is None
    assert reuse_key({"context": {"kind": "build"}}) is None  # a frame from before reuse


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
