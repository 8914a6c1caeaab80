"""Lanes pinned to one backend each, for the tasks that must reach a particular replica.

    targets ─▶ "h1:50051"                      ─▶ its own lane (already one backend)
               "dns:///zako-headless:50051"    ─▶ resolve ─▶ a lane per address, each over
                                                  a channel to that address alone
    routed task ─▶ RouteLanes.lanes() ─▶ rendezvous over those lanes (_routing.py)

A dns:/// replica's usual lanes share one channel that gRPC balances (round_robin), so
which backend a stream lands on is gRPC's choice: fine for spreading tasks, useless for
sending a repeat where its outcome is cached, or a tree's blobs where its task will run.
So routed tasks go over per-address channels instead (as `stats_all()` reaches every
address), ranked by the addresses' own names: every client that resolves the same pods
ranks them alike. Addresses are resolved again after REFRESH seconds, or at once after
one could not be reached (a pod replaced during a rolling update gets a new address);
a channel to an address that left stays open until the client closes (tasks may still
be in flight on it), and is reused if the address returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zako_sdk._replicas import Lane, Replica

__all__ = ["RouteLanes"]

REFRESH = 30.0  # seconds between resolutions of a dns:/// name, for routed tasks


class RouteLanes:
    """The lanes routed tasks rank: plain targets as they are, dns names by address."""

    def __init__(
        self,
        replicas: tuple[Replica, ...],
        plain: Callable[[Replica], Lane],
        make: Callable[[Replica, str], Lane],
        clock: Callable[[], float],
    ) -> None:
        self._replicas = replicas
        self._plain = plain  # the lane of a target that is one backend
        self._make = make  # a lane for one address of a dns replica
        self._clock = clock
        self._by_address: dict[str, Lane] = {}
        self._lanes: list[Lane] | None = None
        self._resolved_at = 0.0
        self._resolving: asyncio.Future[list[Lane]] | None = None

    @property
    def pinned(self) -> list[Lane]:
        """Every per-address lane made so far (the client closes their channels)."""
        return list(self._by_address.values())

    def stale(self) -> None:
        """Resolve again before the next routed task (an address could not be reached)."""
        self._resolved_at = float("-inf")

    async def lanes(self) -> list[Lane]:
        fresh = self._lanes is not None and self._clock() - self._resolved_at < REFRESH
        if fresh and self._lanes is not None:
            return self._lanes
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.ensure_future(self._resolve())
        return await asyncio.shield(self._resolving)

    async def _resolve(self) -> list[Lane]:
        lanes: list[Lane] = []
        for replica in self._replicas:
            if not replica.balanced:
                lanes.append(self._plain(replica))
                continue
            try:
                addresses = await replica.resolve()
            except (OSError, ValueError):
                # Keep what we knew of this name: a resolver hiccup is no reason to stop
                # routing to pods that are still there.
                addresses = [
                    a for a, lane in self._by_address.items() if lane.replica.parent is replica
                ]
            for address in addresses:
                lane = self._by_address.get(address)
                if lane is None:
                    lane = self._by_address[address] = self._make(replica, address)
                lanes.append(lane)
        if not lanes and self._lanes:
            return self._lanes
        self._lanes = lanes
        self._resolved_at = self._clock()
        return lanes
