"""How the clients reach a server: the default target, channel options and call metadata.

Its own concern because it is configuration, not the task: the options both clients'
channels are built with (keepalive, no receive cap, round_robin for a dns:/// name) and
the metadata every call carries (the tenant header). No I/O; targets themselves are read
in `_targets.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Metadata = Mapping[str, str] | Sequence[tuple[str, str]]

DEFAULT_TARGET = "127.0.0.1:50051"
TENANT_HEADER = "x-zako-tenant"

DEFAULT_CHANNEL_OPTIONS: dict[str, Any] = {
    # gRPC's default 4 MiB receive cap would turn a large (server-permitted) result into
    # an opaque RESOURCE_EXHAUSTED on our side; the server already bounds result size.
    "grpc.max_receive_message_length": -1,
    # Keepalive as the server expects it (zako_server/server/app.py): it permits pings every
    # >= 10 s even without calls, so pinging every 30 s never earns a GOAWAY
    # "too_many_pings", and a replica that vanished (pod killed, node gone) is noticed
    # within 40 s instead of at the next TCP timeout, minutes later.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,  # a long task sends no data for minutes
}

# For a dns:/// name: one subchannel per resolved address and calls spread over them
# (the default pick_first would send everything to the first address).
ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(
    extra: Iterable[tuple[str, Any]] | None, *, balanced: bool = False
) -> list[tuple[str, Any]]:
    """Our defaults overlaid with the caller's; the caller's value wins for a repeated key.

    `balanced` (a dns:/// target) adds the round_robin service config.
    """
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    if balanced:
        merged["grpc.service_config"] = ROUND_ROBIN_SERVICE_CONFIG
    merged.update(extra or ())
    return list(merged.items())


def metadata_tuple(
    metadata: Metadata | None, tenant: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Metadata in the one shape grpc accepts everywhere, with the tenant header if given.

    An explicit `tenant` replaces any x-zako-tenant in `metadata`: two would leave the
    server to choose, and it takes the first.
    """
    items = (
        ()
        if metadata is None
        else (metadata.items() if isinstance(metadata, Mapping) else metadata)
    )
    pairs = tuple((str(k).lower(), str(v)) for k, v in items)
    if tenant is None:
        return pairs
    return (*(pair for pair in pairs if pair[0] != TENANT_HEADER), (TENANT_HEADER, tenant))
