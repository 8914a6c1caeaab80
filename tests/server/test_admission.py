"""Admission policy, unit-tested with virtual time: no server, no sleeps."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zako_server.server.admission import Admission
from zako_server.server.errors import CannotFit, Draining, Overloaded, QueueDeadlineExceeded
from zako_server.server.quotas import AdmissionPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(workers=1, cpu=4000.0, clock=None, **policy) -> Admission:
    capacities = {"workers": float(workers), "cpu": cpu, "memory": 1e9, **policy.pop("extra", {})}
    policy.setdefault("queue_capacity", 100)
    return Admission(
        AdmissionPolicy(capacities=capacities, **policy), clock=clock or Clock(), timers=False
    )


def granted(ticket) -> bool:
    return ticket.state == "granted"


async def test_priority_then_arrival_order():
    adm = make(workers=1)
    first, pos = adm.enqueue("first")
    assert pos == 0 and granted(first)
    late_low, _ = adm.enqueue("late-low", priority=5)
    urgent, urgent_pos = adm.enqueue("urgent", priority=-1)
    same, same_pos = adm.enqueue("same", priority=5)
    assert urgent_pos == 0 and same_pos == 2
    order = []
    for ticket in (first, urgent, late_low, same):
        assert granted(ticket)
        order.append(ticket.task_id)
        adm.release(ticket)
    assert order == ["first", "urgent", "late-low", "same"]
    assert adm.statistics().running == 0


async def test_fair_share_bounds_another_tenants_wait():
    """One tenant queues 10,000 tasks; another tenant's single task runs next."""
    adm = make(workers=2, queue_capacity=20_000, tenant_max_queued=20_000)
    flood = [adm.enqueue(f"a{i}", tenant="a")[0] for i in range(10_000)]
    single, _ = adm.enqueue("b0", tenant="b")
    assert not granted(single)
    adm.release(flood[0])  # the next free slot goes to the tenant running fewer tasks
    assert granted(single)
    assert not granted(flood[2])


async def test_backfill_around_a_large_task_until_it_ages():
    clock = Clock()
    adm = make(workers=4, cpu=2000.0, clock=clock, aging=10.0)
    small1, _ = adm.enqueue("small1", request={"cpu": 1000})
    large, _ = adm.enqueue("large", request={"cpu": 2000})
    assert granted(small1) and not granted(large)
    small2, _ = adm.enqueue("small2", request={"cpu": 500})
    assert granted(small2)  # backfilled: it fits beside small1, the large one does not
    adm.release(small1)
    adm.release(small2)
    assert granted(large)

    # Now age a blocked large task: smaller ones stop passing it.
    blocker, _ = adm.enqueue("blocker", request={"cpu": 500})
    adm.release(large)
    assert granted(blocker)
    large2, _ = adm.enqueue("large2", request={"cpu": 2000})
    clock.now += 11
    late_small, _ = adm.enqueue("late-small", request={"cpu": 500})
    assert not granted(large2) and not granted(late_small)  # reserved for large2
    adm.release(blocker)
    assert granted(large2) and not granted(late_small)
    adm.release(large2)
    assert granted(late_small)


async def test_queued_task_past_its_deadline_fails_without_running():
    clock = Clock()
    adm = make(workers=1, clock=clock)
    running, _ = adm.enqueue("running")
    waiting, _ = adm.enqueue("waiting", deadline=5.0)
    patient, _ = adm.enqueue("patient", deadline=50.0)
    clock.now = 6.0
    assert adm.expire() == [waiting]
    with pytest.raises(QueueDeadlineExceeded, match="did not run"):
        await adm.acquire(waiting)
    adm.release(running)
    assert granted(patient) and waiting.state == "expired"


async def test_deadline_timer_wakes_for_an_earlier_deadline_after_a_later_one():
    """The timer is woken only for a deadline earlier than the one it sleeps until: a
    task enqueued after a patient one, with a shorter deadline, still expires on time
    (not when the patient one's is due)."""
    adm = Admission(
        AdmissionPolicy(
            capacities={"workers": 1.0, "cpu": 4000.0, "memory": 1e9}, queue_capacity=10
        )
    )
    running, _ = adm.enqueue("running")
    patient, _ = adm.enqueue("patient", deadline=time.monotonic() + 3600)
    later, _ = adm.enqueue("later", deadline=time.monotonic() + 7200)
    await asyncio.sleep(0)  # the timer now sleeps until the patient task's deadline
    hasty, _ = adm.enqueue("hasty", deadline=time.monotonic() + 0.05)
    with pytest.raises(QueueDeadlineExceeded):
        await asyncio.wait_for(adm.acquire(hasty), 60)
    assert patient.state == later.state == "waiting" and hasty.state == "expired"
    adm.release(running)
    assert granted(patient)
    adm.close()
    if adm._deadline_task is not None:
        adm._deadline_task.cancel()


async def test_cancelled_waiter_leaves_at_once_and_release_is_idempotent():
    adm = make(workers=1)
    holder, _ = adm.enqueue("holder")
    waiter, _ = adm.enqueue("waiter")
    behind, _ = adm.enqueue("behind")
    pending = asyncio.create_task(adm.acquire(waiter))
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert waiter.state == "withdrawn" and adm.statistics().queued == 1
    adm.release(holder)
    adm.release(holder)
    assert adm.statistics().running == 1 and granted(behind)


async def test_waiter_cancelled_just_before_its_grant_or_expiry_hands_the_lease_back():
    """acquire() awaits the ticket's own future (no shield), so a cancel lands on it; a
    grant or an expiry before the waiter's handler runs must neither raise nor leak."""
    clock = Clock()
    adm = make(workers=1, clock=clock)
    holder, _ = adm.enqueue("holder")
    waiter, _ = adm.enqueue("waiter")
    expiring, _ = adm.enqueue("expiring", deadline=1.0)
    pending = [asyncio.create_task(adm.acquire(t)) for t in (waiter, expiring)]
    await asyncio.sleep(0)
    for task in pending:
        task.cancel()  # the tickets' futures are cancelled now; the handlers run later
    adm.release(holder)  # grants `waiter` whose waiter is already cancelled
    clock.now = 2.0
    adm.expire()  # expires `expiring`, likewise
    assert waiter.state == "granted" and expiring.state == "expired"
    for task in pending:
        with pytest.raises(asyncio.CancelledError):
            await task
    stats = adm.statistics()
    assert stats.running == 0 and stats.queued == 0
    after, _ = adm.enqueue("after")
    assert granted(after)


async def test_rejections_name_the_limit():
    adm = make(
        workers=1,
        queue_capacity=2,
        tenant_max_queued=1,
        cpu=2000.0,
        queue_capacity_bytes=100,
        extra={"licenses": 2.0},
    )
    with pytest.raises(CannotFit, match=r"cpu_millis asks for 3000 of 'cpu'.*2000"):
        adm.enqueue("huge", request={"cpu": 3000})
    with pytest.raises(CannotFit, match=r"extras\['gpu'\] asks for 1 of 'gpu'.*capacity is 0"):
        adm.enqueue("gpu", request={"gpu": 1})
    adm.enqueue("run", tenant="t")
    adm.enqueue("wait", tenant="t")
    with pytest.raises(Overloaded) as exc:
        adm.enqueue("more", tenant="t")
    assert exc.value.quota == "tenant/t/max_queued" and exc.value.retry_after
    adm.enqueue("other", tenant="u")
    with pytest.raises(Overloaded, match="queue is full"):
        adm.enqueue("full", tenant="v")
    with pytest.raises(Overloaded, match="bytes"):
        make(queue_capacity_bytes=100).enqueue("big", size_bytes=101)
    adm.close()
    with pytest.raises(Draining):
        adm.enqueue("late")


async def test_tenant_running_quota_holds_its_tasks_but_not_others():
    adm = make(workers=3, tenant_max_running=1)
    a1, _ = adm.enqueue("a1", tenant="a")
    a2, _ = adm.enqueue("a2", tenant="a")
    b1, _ = adm.enqueue("b1", tenant="b")
    assert granted(a1) and not granted(a2) and granted(b1)
    adm.release(a1)
    assert granted(a2)


async def test_statistics_report_resources_tenants_and_wait_histogram():
    clock = Clock()
    adm = make(workers=1, clock=clock)
    first, _ = adm.enqueue("a", tenant="x", request={"cpu": 1500})
    adm.enqueue("b", tenant="y", priority=3, request={"cpu": 700})
    stats = adm.statistics()
    assert stats.resources["cpu"].in_use == 1500 and stats.resources["cpu"].queued_demand == 700
    assert stats.depth_by_priority == {3: 1}
    assert stats.tenants["x"].running == 1 and stats.tenants["y"].queued == 1
    clock.now = 2.0
    adm.release(first)
    wait = adm.statistics().queue_wait
    assert wait.count == 2 and wait.total == 2.0
    assert 1.77 < wait.quantile(0.99) <= 3.17  # within the bucket holding 2.0 s


class AdmissionMachine(RuleBasedStateMachine):
    """Random workloads with random faults: usage returns to zero, capacity is never
    exceeded, and no task is both granted and refused."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.adm = self.loop.run_until_complete(self._make())
        self.live: list = []
        self.refused: set[str] = set()
        self.ever_granted: set[str] = set()
        self.n = 0

    async def _make(self):
        return make(
            workers=3,
            cpu=3000.0,
            clock=self.clock,
            queue_capacity=8,
            tenant_max_queued=5,
            tenant_max_running=2,
            aging=5.0,
            extra={"licenses": 2.0},
        )

    def teardown(self) -> None:
        # Usage returns to zero once every task has ended, whatever happened before.
        try:
            for ticket in self.live:
                self.adm.release(ticket)
                self.adm.withdraw(ticket)
            stats = self.adm.statistics()
            assert stats.running == 0 and stats.queued == 0, stats
            for use in stats.resources.values():
                assert abs(use.in_use) < 1e-9 and abs(use.queued_demand) < 1e-9, stats
        finally:
            self.loop.close()

    @rule(
        tenant=st.sampled_from(["a", "b", "c"]),
        priority=st.integers(-2, 2),
        cpu=st.sampled_from([0, 500, 1000, 2500, 4000]),
        lic=st.integers(0, 3),
        deadline=st.one_of(st.none(), st.floats(0.1, 10)),
    )
    def submit(self, tenant, priority, cpu, lic, deadline):
        self.n += 1
        task_id = f"t{self.n}"
        request = {"cpu": cpu} | ({"licenses": lic} if lic else {})

        async def go():
            return self.adm.enqueue(
                task_id,
                tenant=tenant,
                priority=priority,
                request=request,
                deadline=None if deadline is None else self.clock.now + deadline,
            )

        try:
            ticket, _ = self.loop.run_until_complete(go())
            self.live.append(ticket)
        except (Overloaded, CannotFit):
            self.refused.add(task_id)

    @precondition(lambda self: self.live)
    @rule(
        index=st.integers(0, 100),
        how=st.sampled_from(["complete", "fail", "cancel", "crash", "disconnect"]),
    )
    def end(self, index, how):
        ticket = self.live.pop(index % len(self.live))
        # Every ending path reduces to release (granted) or withdraw (waiting); faults may
        # call both, and more than once.
        self.adm.release(ticket)
        self.adm.withdraw(ticket)
        if how in {"crash", "disconnect"}:
            self.adm.release(ticket)

    @rule(step=st.floats(0, 6))
    def time_passes(self, step):
        self.clock.now += step
        for ticket in self.adm.expire():
            self.live.remove(ticket)

    @invariant()
    def never_over_capacity_and_never_both(self):
        stats = self.adm.statistics()
        for name, use in stats.resources.items():
            assert -1e-9 <= use.in_use <= use.capacity + 1e-9, (name, use)
        for ticket in self.live:
            if ticket.state == "granted":
                self.ever_granted.add(ticket.task_id)
        assert not (self.ever_granted & self.refused)
        for tenant, use in stats.tenants.items():
            assert use.running <= 2, tenant
            # Fair share (#12): a tenant holds at most what was free when it came, so
            # never more than half the queue (here 4 of 8, below its quota of 5).
            assert use.queued <= (stats.capacity + 1) // 2, (tenant, use)


class TestAdmissionMachine(AdmissionMachine.TestCase):
    settings = hyp_settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_usage_returns_to_zero_after_every_task_ends():
    machine = AdmissionMachine()
    for i in range(30):
        machine.submit(
            tenant="abc"[i % 3],
            priority=i % 3 - 1,
            cpu=[500, 1000, 2500][i % 3],
            lic=i % 2,
            deadline=None if i % 4 else 1.0,
        )
    machine.time_passes(2.0)
    while len(machine.live) > 5:
        machine.end(0, "complete")
    machine.teardown()  # ends the rest and checks that usage is back to zero


async def test_spare_worker_places_go_to_the_head_of_the_line_only():
    """Prefetch (pool.py): beyond the workers capacity, admission grants the places busy
    workers can queue a task in right now, in line order and without backfill."""
    spare = [0]
    adm = Admission(
        AdmissionPolicy(
            capacities={"workers": 1.0, "cpu": 4000.0, "memory": 1e9}, queue_capacity=100
        ),
        clock=Clock(),
        timers=False,
        spare_slots=lambda: spare[0],
    )
    running, _ = adm.enqueue("running", request={"cpu": 1000.0})
    big, _ = adm.enqueue("big", request={"cpu": 3500.0})  # cannot fit beside "running"
    small, _ = adm.enqueue("small", request={"cpu": 100.0})
    assert granted(running) and not granted(big) and not granted(small)
    spare[0] = 1
    adm.regrant()
    # The head does not fit: the spare place is not given to a task behind it.
    assert not granted(big) and not granted(small)
    adm.release(running)  # "big" runs; a worker place is spare for the next in line
    assert granted(big) and granted(small)
    spare[0] = 0
    late, _ = adm.enqueue("late", request={"cpu": 100.0})
    assert not granted(late)  # no spare place: it waits for a worker
    adm.release(big)
    assert not granted(late)  # "small" holds the one place now
    adm.release(small)
    assert granted(late)
