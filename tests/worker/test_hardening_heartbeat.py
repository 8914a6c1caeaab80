"""#12 item 4, worker side: a worker answers a heartbeat at once, idle and while task
code spins (it runs in V8, off the worker's event loop), and a run's logs come
coalesced, a bounded number of lines per frame."""

from __future__ import annotations

from test_process import WorkerClient, worker  # noqa: F401 (the fixture)

from zako_server.protocol import (
    LOG_BATCH_LINES,
    DoneEvent,
    LogsEvent,
    PingFrame,
    PongEvent,
    StartedEvent,
)


async def test_an_idle_worker_answers_a_ping(worker: WorkerClient):  # noqa: F811
    worker.send(PingFrame(7))
    assert await worker.recv() == PongEvent(7)


async def test_a_busy_worker_answers_pings_while_its_task_spins(worker: WorkerClient):  # noqa: F811
    task_id = worker.submit("while (true) {}", timeout_s=3)
    assert await worker.recv() == StartedEvent(task_id)
    for seq in range(1, 4):
        worker.send(PingFrame(seq))
        assert await worker.recv() == PongEvent(seq)  # before the task's done event
    done = await worker.recv(timeout=10)
    assert isinstance(done, DoneEvent) and done.reason is not None
    assert done.reason.value == "timeout"


async def test_lines_travel_in_bounded_batches(worker: WorkerClient):  # noqa: F811
    task_id = worker.submit("for (let i = 0; i < 2500; i++) console.log('n' + i)")
    assert await worker.recv() == StartedEvent(task_id)
    batches = []
    while True:
        event = await worker.recv()
        if isinstance(event, DoneEvent):
            break
        assert isinstance(event, LogsEvent), event
        batches.append(event.lines)
    assert [len(b) for b in batches] == [LOG_BATCH_LINES, LOG_BATCH_LINES, 500]
    assert [line[1] for b in batches for line in b] == [f"n{i}" for i in range(2500)]
