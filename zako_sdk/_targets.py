"""How the clients read their targets: one server, several replicas, or a dns:/// name.

    "h1:50051"                     one replica
    "h1:50051,h2:50051" or a list  several replicas: one channel and one shared Submit
                                   stream each; the SDK spreads tasks over them
    "dns:///zako-headless:50051"   a name gRPC resolves and balances over (round_robin)

Pure string work, kept apart so the parsing is tested without a network.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["address_target", "dns_host_port", "is_balanced", "parse_targets"]


def parse_targets(target: str | Sequence[str]) -> tuple[str, ...]:
    """The replicas a client talks to, from one string or a list of them.

    Commas separate targets ("h1:50051,h2:50051", as ZAKO_TARGET or --target give them);
    blanks around them are dropped, and so are repeats (a replica named twice would get
    twice the share of tasks).

        parse_targets("h1:1, h2:2") == ("h1:1", "h2:2")
        parse_targets(["dns:///zako-headless:50051"]) == ("dns:///zako-headless:50051",)
    """
    parts = [target] if isinstance(target, str) else list(target)
    seen: dict[str, None] = {}
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"a target is a string, got {type(part).__name__}")
        for item in part.split(","):
            if item.strip():
                seen.setdefault(item.strip())
    if not seen:
        raise ValueError(f"no target given in {target!r}")
    return tuple(seen)


def is_balanced(target: str) -> bool:
    """Whether `target` is a dns: name whose addresses gRPC balances over (round_robin)."""
    return target.startswith("dns:")


def dns_host_port(target: str, default_port: int = 443) -> tuple[str, int]:
    """Host and port of a dns target: "dns:///name:50051", "dns://8.8.8.8/name:50051",
    "dns:name:50051"; an IPv6 literal goes in brackets. 443 is gRPC's own default port."""
    rest = target.removeprefix("dns:")
    if rest.startswith("//"):
        rest = rest[2:].partition("/")[2]  # drop the authority (the DNS server to ask)
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    if not host:
        raise ValueError(f"no host name in target {target!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in target {target!r}") from None


def address_target(ip: str, port: int) -> str:
    """A gRPC target naming exactly one resolved address (for per-replica fan-out calls)."""
    return f"ipv6:[{ip}]:{port}" if ":" in ip else f"ipv4:{ip}:{port}"
