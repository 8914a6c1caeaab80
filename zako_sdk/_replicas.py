"""Replicas and the lanes tasks travel on: which one a task goes to next.

    targets ─▶ Cluster: one Replica (one channel) per target
                 ├─ lanes: one per replica; a dns:/// replica gets one per resolved address
                 └─ route_lanes: one per backend, for routed tasks (_addresses.py)
    Cluster.pick ─▶ pick_lane: a hermetic task in its rendezvous order (_routing.py),
                    others round robin; skipping replicas cooling down

A dns:/// replica is one channel that gRPC balances with round_robin; since round_robin
balances *calls* and a Submit stream is one call, such a replica gets one lane (one
stream) per address it resolves to, and consecutive streams land on different backends.
Placing tasks on the lanes, and placing them again, is `_placement.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from zako_sdk._addresses import RouteLanes
from zako_sdk._channel import channel_options
from zako_sdk._retries import pick_lane
from zako_sdk._routing import rendezvous_order
from zako_sdk._targets import address_target, dns_host_port, is_balanced
from zako_sdk.errors import (
    Unavailable,
    ZakoError,
    map_rpc_error,
)
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

# How long a task waits for a replica's connection before trying another. A refused
# connection fails at once; this bounds an address that swallows packets.
CONNECT_TIMEOUT = 10.0
# Streams per dns:/// name: one per address, within reason.
MAX_LANES = 16

Endpoint = tuple[str, "pb_grpc.ExecutorStub | ZakoError"]


class Replica:
    """One target and its channel (created on first use, on the loop that uses it).

    `parent` is set for one address of a dns:/// replica (see _addresses.py)."""

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None,
        options: Iterable[tuple[str, Any]] | None,
        parent: Replica | None = None,
    ) -> None:
        self.target = target
        self.parent = parent
        self.balanced = is_balanced(target)
        self._credentials = credentials
        self._extra = list(options or ())
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.ExecutorStub | None = None

    def open_channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._credentials, options=options)

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = self.open_channel(
                self.target, channel_options(self._extra, balanced=self.balanced)
            )
        return self._channel

    @property
    def stub(self) -> pb_grpc.ExecutorStub:
        if self._stub is None:
            self._stub = pb_grpc.ExecutorStub(self.channel)
        return self._stub

    async def ready(self, timeout: float = CONNECT_TIMEOUT) -> bool:
        """Whether the channel is connected, connecting it if need be.

        Tasks go onto a new stream only over a connected channel: then a stream that
        fails later may have delivered them (never resent), while a replica that cannot
        be reached demonstrably has nothing (resent elsewhere at once). A channel in
        TRANSIENT_FAILURE answers False immediately; gRPC reconnects in the background.
        """
        channel = self.channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            remaining = deadline - loop.time()
            if (
                state
                in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
                or remaining <= 0
            ):
                return False
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except asyncio.TimeoutError:
                return False
            state = channel.get_state(try_to_connect=True)
        return True

    async def resolve(self) -> list[str]:
        """The address targets a dns:/// name resolves to now (for per-replica calls)."""
        host, port = dns_host_port(self.target)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(address_target(str(info[4][0]), port) for info in infos))

    def address_options(self) -> list[tuple[str, Any]]:
        """Options for a channel to one resolved address of this dns name."""
        options = channel_options(self._extra)
        given = any(key == "grpc.ssl_target_name_override" for key, _ in options)
        if self._credentials is not None and not given:
            # Connecting by IP must still verify the certificate against the name (unless
            # the caller chose the name to verify against).
            options.append(("grpc.ssl_target_name_override", dns_host_port(self.target)[0]))
        return options

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()


@dataclass(eq=False)
class Lane:
    """One Submit stream's worth of a replica; `cool_until` keeps retries off it."""

    replica: Replica
    slot: int
    cool_until: float = 0.0


class Cluster:
    """The client's replicas and lanes: the round robin and the cooldowns."""

    def __init__(
        self,
        targets: Iterable[str],
        *,
        credentials: grpc.ChannelCredentials | None,
        options: Iterable[tuple[str, Any]] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        extra = list(options or ())
        self.replicas = tuple(Replica(t, credentials=credentials, options=extra) for t in targets)
        self._plain = {r: Lane(r, 0) for r in self.replicas if not r.balanced}
        self._lanes: list[Lane] | None = None
        if not any(r.balanced for r in self.replicas):
            self._lanes = list(self._plain.values())
        self._next = 0
        self.clock = clock
        self._routed = RouteLanes(
            self.replicas, self._plain.__getitem__, self._address_lane, lambda: self.clock()
        )

    @staticmethod
    def _address_lane(replica: Replica, address: str) -> Lane:
        pinned = Replica(
            address,
            credentials=replica._credentials,
            options=replica.address_options(),
            parent=replica,
        )
        return Lane(pinned, 0)

    async def route_lanes(self) -> list[Lane]:
        """The lanes a routed task is ranked over: one per backend (see _addresses.py)."""
        if self._lanes is not None and self._plain and len(self._plain) == len(self.replicas):
            return self._lanes
        return await self._routed.lanes()

    def unreachable(self, lane: Lane) -> None:
        """`lane`'s replica could not be reached: a pinned address may have left."""
        if lane.replica.parent is not None:
            self._routed.stale()

    @property
    def known_lanes(self) -> list[Lane] | None:
        """The lanes if already known (always, without a dns:/// target), else None: lets
        the per-task path skip a coroutine."""
        return self._lanes

    async def lanes(self) -> list[Lane]:
        if self._lanes is None:
            counts = [await self._lane_count(r) for r in self.replicas]
            if self._lanes is None:  # another caller may have finished first
                self._lanes = [
                    self._plain[r] if not r.balanced else Lane(r, slot)
                    for r, n in zip(self.replicas, counts, strict=True)
                    for slot in range(n)
                ]
        return self._lanes

    @staticmethod
    async def _lane_count(replica: Replica) -> int:
        if not replica.balanced:
            return 1
        try:
            return max(1, min(MAX_LANES, len(await replica.resolve())))
        except (OSError, ValueError):
            return 1  # gRPC's resolver may still succeed; one stream is a safe start

    @property
    def routes(self) -> bool:
        """Whether tasks may go by rendezvous: several replicas, or a dns:/// name (which
        may stand for several; routed tasks reach its addresses one by one)."""
        return len(self.replicas) > 1 or any(r.balanced for r in self.replicas)

    def pick(
        self, lanes: list[Lane], avoid: Lane | None = None, route: bytes | None = None
    ) -> Lane:
        """The lane for an attempt: round robin, or for `route` (an action key) the first
        replica of its rendezvous order that is not cooling down (see pick_lane)."""
        if len(lanes) == 1:  # pick_lane's answer for one lane, whatever the cooldowns
            return lanes[0]
        avoid_index = next((i for i, lane in enumerate(lanes) if lane is avoid), None)
        order = None
        if route is not None:
            order = rendezvous_order(route, [lane.replica.target for lane in lanes])
        index = pick_lane(
            [lane.cool_until for lane in lanes], self._next, self.clock(), avoid_index, order
        )
        if order is None:
            self._next = index + 1
        return lanes[index]

    def cool(self, lane: Lane, seconds: float) -> None:
        lane.cool_until = max(lane.cool_until, self.clock() + seconds)

    async def next_lane(self, delay: float, avoid: Lane | None, route: bytes | None = None) -> Lane:
        """Wait `delay`, then the lane for a retry, once its cooldown (if any) is over."""
        await asyncio.sleep(delay)
        lanes = await (self.route_lanes() if route is not None else self.lanes())
        lane = self.pick(lanes, avoid, route)
        wait = lane.cool_until - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        return lane

    @contextlib.asynccontextmanager
    async def endpoints(self) -> AsyncIterator[list[Endpoint]]:
        """A stub per replica, for calls that must reach each one (stats_all, cancel by id).

        A dns:/// name stands for every address it resolves to now, each reached over a
        channel of its own: its balanced channel could not say which replica answered.
        """
        endpoints: list[Endpoint] = []
        transient: list[grpc.aio.Channel] = []
        try:
            for replica in self.replicas:
                if not replica.balanced:
                    endpoints.append((replica.target, replica.stub))
                    continue
                try:
                    addresses = await replica.resolve()
                except (OSError, ValueError) as exc:
                    error = Unavailable(
                        f"cannot resolve {replica.target}: {exc}", code=grpc.StatusCode.UNAVAILABLE
                    )
                    endpoints.append((replica.target, error))
                    continue
                for address in addresses:
                    channel = replica.open_channel(address, replica.address_options())
                    transient.append(channel)
                    endpoints.append((address, pb_grpc.ExecutorStub(channel)))
            yield endpoints
        finally:
            for channel in transient:
                await channel.close()

    async def fan_out(
        self,
        method: str,
        request: Any,
        *,
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
    ) -> dict[str, Any]:
        """`method` on every replica at once: each one's answer or ZakoError, by replica."""
        async with self.endpoints() as endpoints:

            async def ask(stub: pb_grpc.ExecutorStub | ZakoError) -> Any:
                if isinstance(stub, ZakoError):
                    return stub
                try:
                    return await getattr(stub, method)(request, timeout=timeout, metadata=metadata)
                except grpc.RpcError as exc:
                    return map_rpc_error(exc)  # with exc as its __cause__

            answers = await asyncio.gather(*(ask(stub) for _, stub in endpoints))
        return {label: answer for (label, _), answer in zip(endpoints, answers, strict=True)}

    async def aclose(self) -> None:
        for replica in (*self.replicas, *(lane.replica for lane in self._routed.pinned)):
            await replica.aclose()
