"""Admission rules, unit-tested without a server or sleeps."""

from __future__ import annotations

import asyncio

import pytest

from zako_server.admission import Admission
from zako_server.errors import Draining, Overloaded


async def test_grants_up_to_slots_then_queues_in_priority_then_arrival_order():
    admission = Admission(slots=1, queue_capacity=10)
    first, pos = admission.enqueue("first", priority=0)
    assert pos == 0 and first.granted.done()  # a free slot grants at once
    late_low, _ = admission.enqueue("late-low", priority=5)
    urgent, urgent_pos = admission.enqueue("urgent", priority=-1)
    same, _ = admission.enqueue("same", priority=5)
    assert urgent_pos == 0 and admission.position(late_low) == 1
    order: list[str] = []

    async def worker(ticket):
        await admission.acquire(ticket)
        order.append(ticket.task_id)
        admission.release(ticket)

    tasks = [asyncio.create_task(worker(t)) for t in (late_low, same, urgent)]
    await asyncio.sleep(0)
    admission.release(first)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["urgent", "late-low", "same"]
    assert admission.statistics().running == 0


async def test_full_queue_rejects_with_retry_hint_and_closed_rejects_as_draining():
    admission = Admission(slots=1, queue_capacity=1)
    admission.enqueue("running")
    admission.enqueue("waiting")
    with pytest.raises(Overloaded) as exc:
        admission.enqueue("one-too-many")
    assert exc.value.retry_after and "queue is full" in exc.value.message
    admission.close()
    with pytest.raises(Draining):
        admission.enqueue("late")


async def test_cancelled_waiter_leaves_the_line_and_release_is_idempotent():
    admission = Admission(slots=1, queue_capacity=5)
    holder, _ = admission.enqueue("holder")
    waiter, _ = admission.enqueue("waiter")
    behind, _ = admission.enqueue("behind")
    pending = asyncio.create_task(admission.acquire(waiter))
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert admission.position(waiter) is None
    assert admission.position(behind) == 0
    admission.release(holder)
    admission.release(holder)  # second release must not free a second slot
    stats = admission.statistics()
    assert stats.running == 1 and stats.queued == 0
    assert behind.granted.done()
