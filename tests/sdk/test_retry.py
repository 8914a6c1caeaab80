"""Retry decisions and replica choice: pure logic, an injected clock, no sleeps."""

from __future__ import annotations

import grpc
import pytest

from zako_sdk import (
    ClientClosed,
    InvalidTask,
    JsError,
    Overloaded,
    Result,
    Retry,
    TaskCancelled,
    TaskFailed,
    TaskRejected,
    Unavailable,
)
from zako_sdk._channel import TENANT_HEADER, metadata_tuple
from zako_sdk._retries import backoff_delay, never_ran, pick_lane, plan_retry

EXHAUSTED = Overloaded(
    "queue is full", task_id="t", code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=2.0
)
DRAINING = Overloaded("draining", task_id="t", code=grpc.StatusCode.UNAVAILABLE, retry_after=1.0)
BROKEN = Unavailable("stream broke", code=grpc.StatusCode.UNAVAILABLE)
FAILED = TaskFailed(task_id="t", reason="JS_ERROR", js_error=JsError("Error", "boom"))
NO_JITTER = Retry(attempts=3, backoff=0.1, max_backoff=5.0, jitter=0.0)


@pytest.mark.parametrize(
    ("outcome", "sent", "expected"),
    [
        (EXHAUSTED, True, True),  # queue or quota full: the server says it never ran
        (DRAINING, True, True),  # a draining replica refused it
        (BROKEN, False, True),  # never left this client
        (BROKEN, True, False),  # the stream broke after the task was written: may have run
        (FAILED, True, False),
        (TaskCancelled(task_id="t", reason="server shutdown"), True, False),
        (InvalidTask("bad", task_id="t", code=grpc.StatusCode.INVALID_ARGUMENT), True, False),
        (TaskRejected("odd", task_id="t", code=grpc.StatusCode.PERMISSION_DENIED), True, False),
        (ClientClosed("closed"), False, False),  # misuse is never retried
        (Result(task_id="t", value_json="1"), True, False),
    ],
)
def test_only_outcomes_that_prove_the_task_never_ran_are_retryable(outcome, sent, expected):
    assert never_ran(outcome, sent=sent) is expected
    plan = plan_retry(NO_JITTER, 1, outcome, sent=sent, rand=0.5)
    assert (plan is not None) is expected


def test_backoff_doubles_up_to_the_cap():
    retry = Retry(backoff=0.1, max_backoff=0.5, jitter=0.0)
    assert [backoff_delay(retry, n, 0.0) for n in (1, 2, 3, 4, 5)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5]
    )


def test_jitter_spreads_the_backoff_both_ways():
    retry = Retry(backoff=1.0, jitter=0.2)
    assert backoff_delay(retry, 1, 0.0) == pytest.approx(0.8)
    assert backoff_delay(retry, 1, 0.5) == pytest.approx(1.0)
    assert backoff_delay(retry, 1, 0.999999) == pytest.approx(1.2, abs=1e-5)


def test_attempts_bound_the_retries():
    assert plan_retry(NO_JITTER, 2, EXHAUSTED, sent=True, rand=0.5) is not None
    assert plan_retry(NO_JITTER, 3, EXHAUSTED, sent=True, rand=0.5) is None


@pytest.mark.parametrize("retry", [None, Retry(attempts=1)])
def test_retries_can_be_disabled(retry):
    assert plan_retry(retry, 1, EXHAUSTED, sent=True, rand=0.5) is None


def test_the_refusing_replica_cools_for_its_retry_after_and_the_task_waits_the_backoff():
    plan = plan_retry(NO_JITTER, 1, EXHAUSTED, sent=True, rand=0.5)
    assert plan is not None and plan.delay == pytest.approx(0.1) and plan.cooldown == 2.0


def test_an_unreachable_replica_cools_for_the_backoff():
    plan = plan_retry(NO_JITTER, 2, BROKEN, sent=False, rand=0.5)
    assert plan is not None and plan.delay == pytest.approx(0.2) == plan.cooldown


def test_a_rejection_without_retry_after_cools_for_the_backoff():
    refused = Overloaded("full", task_id="t", code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    plan = plan_retry(NO_JITTER, 1, refused, sent=True, rand=0.5)
    assert plan is not None and plan.cooldown == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [dict(attempts=0), dict(backoff=-1), dict(jitter=1.5)])
def test_retry_validates_its_fields(bad):
    with pytest.raises(ValueError):
        Retry(**bad)


class TestPickLane:
    NOW = 100.0

    def test_round_robin_from_the_start_index(self):
        free = [0.0, 0.0, 0.0]
        assert [pick_lane(free, start, self.NOW) for start in range(5)] == [0, 1, 2, 0, 1]

    def test_cooling_lanes_are_skipped(self):
        assert pick_lane([0.0, 150.0, 0.0], 1, self.NOW) == 2

    def test_the_lane_that_refused_is_avoided_even_when_not_cooling(self):
        assert pick_lane([0.0, 0.0], 0, self.NOW, avoid=0) == 1

    def test_the_avoided_lane_is_taken_when_every_other_is_cooling(self):
        assert pick_lane([0.0, 150.0, 120.0], 1, self.NOW, avoid=0) == 0

    def test_when_all_are_cooling_the_one_free_soonest_is_chosen(self):
        assert pick_lane([130.0, 150.0, 120.0], 0, self.NOW, avoid=2) == 2
        assert pick_lane([130.0], 0, self.NOW, avoid=0) == 0  # one replica: wait for it

    def test_a_cooldown_that_ended_counts_as_free(self):
        assert pick_lane([100.0, 0.0], 0, self.NOW) == 0

    def test_no_lanes_is_a_bug(self):
        with pytest.raises(ValueError):
            pick_lane([], 0, self.NOW)


def test_tenant_sets_the_header_and_replaces_one_in_metadata():
    assert metadata_tuple(None, "acme") == ((TENANT_HEADER, "acme"),)
    assert metadata_tuple({"X-Zako-Tenant": "old", "a": "1"}, "acme") == (
        ("a", "1"),
        (TENANT_HEADER, "acme"),
    )
    assert metadata_tuple({"x-zako-tenant": "kept"}) == ((TENANT_HEADER, "kept"),)
