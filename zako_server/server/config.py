"""Settings: built once at start-up (flags > env `ZAKO_*` > heuristics/defaults), then frozen.

Every option is declared once in `OPTIONS` (options.py); the flag, the environment variable
and the `--print-config` line all derive from that one declaration, so they cannot drift
apart. This module resolves each option's value from where it is given and builds the
frozen `Settings` (settings.py). Nothing after start-up reads the environment: the frozen
`Settings` is passed down and each part takes what it needs.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from zako_server.server.heuristics import (
    Machine,
    default_cas_bytes,
    default_max_workers,
    default_queue_capacity,
    probe_machine,
)
from zako_server.server.options import OPTIONS
from zako_server.server.settings import Settings

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
_HEURISTIC = {"max_workers", "queue_capacity", "tenant_max_queued", "cas_bytes"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per option; values stay strings until `build_settings` parses them."""
    for option in OPTIONS:
        default = _DEFAULTS[option.name]
        shown = "from the machine" if option.name in _HEURISTIC else repr(default)
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            metavar="VALUE",
            help=f"{option.help} [env {option.env}; default {shown}]",
        )


def build_settings(
    flags: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    machine: Machine | None = None,
) -> Settings:
    """Resolve every option: flag, then `ZAKO_*` environment variable, then default.

    Raises ValueError naming the option and where the bad value came from.
    """
    flags = flags or {}
    env = env or {}
    machine = machine or probe_machine()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw, source = flags.get(option.name), f"flag {option.flag}"
        if raw is None and option.env in env:
            raw, source = env[option.env], f"env {option.env}"
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{option.name} from {source}: {exc}") from exc
        sources[option.name] = source
    if "max_workers" not in values:
        values["max_workers"] = default_max_workers(machine)
        sources["max_workers"] = f"heuristic: half of {machine.cpus:g} effective CPUs, >= 1"
    if "queue_capacity" not in values:
        values["queue_capacity"] = default_queue_capacity(values["max_workers"])
        sources["queue_capacity"] = "heuristic: max(2 x max_workers, 1024)"
    if "tenant_max_queued" not in values:
        # A quota above the queue's capacity could never be reached (#12).
        values["tenant_max_queued"] = values["queue_capacity"]
        sources["tenant_max_queued"] = "heuristic: queue_capacity"
    if "cas_bytes" not in values:
        values["cas_bytes"] = default_cas_bytes(machine)
        sources["cas_bytes"] = (
            f"heuristic: 10% of {machine.memory_bytes} bytes effective memory, in [4MiB, 4GiB]"
        )
    if "min_workers" not in values:
        values["min_workers"] = min(_DEFAULTS["min_workers"], values["max_workers"])
    return Settings(**values, machine=machine, sources=sources)


def settings_from_args(
    argv: Sequence[str] | None, env: Mapping[str, str]
) -> tuple[Settings, argparse.Namespace]:
    """Parse the command line of `zako-server` into Settings (plus the non-setting flags)."""
    parser = argparse.ArgumentParser(
        prog="zako-server",
        description="Zako: remote execution of JavaScript on a pool of V8 workers, over gRPC.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a resource capacity; may repeat (joins --resources)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting, its value and where it came from, then exit",
    )
    args = parser.parse_args(argv)
    flags = {option.name: getattr(args, option.name) for option in OPTIONS}
    if args.resource:
        flags["resources"] = ",".join(filter(None, [flags["resources"], *args.resource]))
    try:
        settings = build_settings(flags, env)
    except ValueError as exc:
        parser.error(str(exc))
    return settings, args
