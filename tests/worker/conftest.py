"""Fixtures for the worker's tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


class ArmedTimers:
    """How many timers the running loop was asked to arm (`call_at`, which `call_later`
    goes through too) since the fixture was made."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
async def armed_timers(monkeypatch: pytest.MonkeyPatch) -> ArmedTimers:
    loop = asyncio.get_running_loop()
    counter = ArmedTimers()
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        counter.count += 1
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    return counter
