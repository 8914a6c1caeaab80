"""What each `zako` command does once its arguments are parsed: run, stats, and the
one-call commands (gc, capabilities, cancel), with their output on stdout.

Its own concern because it is the commands' behaviour (reading the task's files and
input, printing the value, the stats table or JSON, `--watch`), apart from how their
arguments are declared (`_cli_args.py`) and from `main()` (`cli.py`), which connects,
dispatches and turns errors into exit statuses. Each command takes the sync `Client`
and returns an exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from zako_sdk._cli_args import EXIT_OK, EXIT_UNAVAILABLE, UsageError
from zako_sdk._sync import Client
from zako_sdk._table import render_cluster, render_stats
from zako_sdk.models import CancelResult, LogLine, Result
from zako_sdk.stats import JsonView
from zako_sdk.trees import ModuleTree, entry_in_tree, pack_directory

__all__ = ["ADMIN_COMMANDS", "run_command", "stats_command", "to_json"]


def _read_text(path: str, what: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc


def _input(args: argparse.Namespace) -> Any:
    if args.input_file is not None:
        text, origin = _read_text(args.input_file, "input file"), args.input_file
    elif args.input is not None:
        text, origin = args.input, "--input"
    else:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{origin} is not valid JSON: {exc}") from exc


def _print_log(line: LogLine) -> None:
    # Plain text for console.log/info so a script's output reads naturally; a prefix for
    # the other levels, which are the ones worth noticing.
    prefix = "" if line.level == "info" else f"{line.level}: "
    print(f"{prefix}{line.message}", file=sys.stderr, flush=True)


def _format_result(result: Result, args: argparse.Namespace) -> str:
    if args.full:
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    if args.compact:
        return result.value_json or "null"
    return json.dumps(result.value, indent=2, ensure_ascii=False)


def run_command(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    source = _read_text(args.file, "file")
    files: dict[str, str] = {}
    entry = "main.js" if args.file == "-" else os.path.basename(args.file)
    if args.modules is not None:
        try:
            files = pack_directory(args.modules)
        except (ValueError, OSError) as exc:
            raise UsageError(f"--modules {args.modules!r}: {exc}") from exc
        inside = None if args.file == "-" else entry_in_tree(args.file, args.modules)
        if inside is not None:
            entry = inside  # the SDK leaves it out of the tree: it travels as the source
    files.update((name, _read_text(path, "module")) for name, path in args.module)
    try:
        modules = ModuleTree(files) if files else None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the module tree: {exc}") from exc
    result = client.run(
        source,
        input=_input(args),
        context=args.context,
        timeout=args.timeout,
        modules=modules,
        entry_name=entry,
        priority=args.priority,
        labels=dict(args.label),
        system_access=args.system_access,
        task_id=args.task_id,
        fresh_isolate=args.fresh_isolate,
        epoch=args.epoch,
        seed=args.seed,
        cache=args.cache,
        on_log=_print_log,
    )
    print(_format_result(result, args), file=out)
    return EXIT_OK


def to_json(answer: JsonView | CancelResult) -> str:
    """The SDK value's own JSON view: proto field names, zeros printed (so that
    `jq '.pool.busy > 0'` works), durations in seconds, enums by short name."""
    return json.dumps(answer.to_dict(), indent=2, ensure_ascii=False)


def _stats_frame(client: Client, args: argparse.Namespace) -> tuple[str, int]:
    """One snapshot as printed, and the exit status it implies.

    `--all` prints even when some replica did not answer (the rest is still worth
    seeing); the status then says the picture is incomplete. Its JSON is
    {"total": …, "replicas": {target: …}, "errors": {target: "…"}}.
    """
    if not args.all:
        stats = client.stats()
        return (
            to_json(stats) + "\n" if args.json else render_stats(stats, title=client.target)
        ), EXIT_OK
    cluster = client.stats_all()
    status = EXIT_UNAVAILABLE if cluster.errors else EXIT_OK
    if not args.json:
        return render_cluster(cluster.total, cluster.replicas, cluster.errors), status
    document = {
        "total": cluster.total.to_dict(),
        "replicas": {name: stats.to_dict() for name, stats in cluster.replicas.items()},
        "errors": {name: str(error) for name, error in cluster.errors.items()},
    }
    for name, error in cluster.errors.items():
        print(f"zako: replica {name} did not answer: {error}", file=sys.stderr)
    return json.dumps(document, indent=2) + "\n", status


def stats_command(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    """`zako stats`, once or (`--watch`) until Ctrl-C or `--count` frames.

    The screen is cleared between frames only on a terminal: piped into a file or
    `less`, escape codes would be noise, so frames are separated by a blank line.
    A failed call ends the watch with its exit status, like any other command.
    """
    frames = 0
    while True:
        text, status = _stats_frame(client, args)
        if args.watch is not None and out.isatty():
            out.write("\x1b[H\x1b[2J")  # cursor home, clear screen
        elif frames:
            out.write("\n")
        out.write(text)
        out.flush()
        frames += 1
        if args.watch is None or (args.count and frames >= args.count):
            return status
        time.sleep(args.watch)


ADMIN_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], JsonView | CancelResult]] = {
    "gc": lambda client, _: client.gc(),
    "capabilities": lambda client, _: client.capabilities(),
    "cancel": lambda client, args: client.cancel(args.task_id, args.reason),
}
