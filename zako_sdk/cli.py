"""The `zako` command: run a JS file on a Zako server, or ask the server about itself.

    zako run build.js --input '{"target": "x86_64"}'     # value as JSON on stdout
    zako run src/main.ts --modules . --full              # the project as its tree; "cached"
    zako stats --watch                                  # a table, refreshed every 2 s
    zako stats --json | jq .pool
    zako stats --all --json --target zako-0:50051,zako-1:50051 | jq .total.tasks
    zako cancel 3f2a… --target dns:///zako-headless:50051   # asks every replica
    zako gc --tls-ca ca.pem --token "$(cat token)"        # TLS and a bearer token

stdout carries only the answer (JSON, or the stats table) so it can be piped; the task's
console lines and every error go to stderr. It is built on the sync `Client`, which keeps
its own event loop thread, so `main()` can be called from any test, async or not.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc

from zako_sdk._base import DEFAULT_TARGET
from zako_sdk._sync import Client
from zako_sdk._table import render_cluster, render_stats
from zako_sdk.errors import (
    PermissionDenied,
    RPCError,
    TaskError,
    TaskRejected,
    TransportError,
    Unauthenticated,
    ZakoError,
)
from zako_sdk.models import CONTEXT_NAMES, CancelResult, LogLine, Result
from zako_sdk.stats import JsonView
from zako_sdk.trees import ModuleTree, entry_in_tree, pack_directory

__all__ = ["main"]

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2  # argparse's own code for a bad command line; we reuse it for bad input files
EXIT_REJECTED = 3
EXIT_UNAVAILABLE = 4
EXIT_UNAUTHENTICATED = 5
EXIT_PERMISSION_DENIED = 6
EXIT_INTERRUPTED = 128 + signal.SIGINT

_EPILOG = f"""exit status:
  {EXIT_OK}    success
  {EXIT_TASK_FAILED}    the task failed, timed out or was cancelled (the JS error is on stderr)
  {EXIT_USAGE}    bad command line, or an input/module file that cannot be read
  {EXIT_REJECTED}    the server rejected the task (invalid, too big, or overloaded)
  {EXIT_UNAVAILABLE}    the server could not be reached, or the call failed
  {EXIT_UNAUTHENTICATED}    the server did not accept the token (or none was given)
  {EXIT_PERMISSION_DENIED}    the token's role may not do this (e.g. gc needs admin)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); a running task is cancelled

targets:
  host:port                one server
  h1:port,h2:port          several replicas; tasks are spread over them
  dns:///name:port         every address of a DNS name (e.g. a headless Service)

environment:
  ZAKO_TARGET  default for --target (else {DEFAULT_TARGET})
  ZAKO_TOKEN   default for --token (safer than the command line, which `ps` shows)
  ZAKO_TENANT  default for --tenant
"""


class UsageError(Exception):
    """A problem with the command line found after parsing (unreadable file, bad JSON)."""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _epoch(text: str) -> datetime.datetime | float:
    """--epoch: seconds since 1970, or an ISO 8601 time that names its zone."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ISO 8601 (2024-06-01T00:00:00Z) or seconds, got {text!r}"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"name the zone (e.g. a trailing Z): {text!r}")
    return when


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def build_parser(default_target: str) -> argparse.ArgumentParser:
    """The argument parser; `default_target` comes from the environment, read once in main."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=default_target,
        help="server address host:port, a comma-separated list of replicas, "
        f"or dns:///name:port (default: {default_target})",
    )
    secure = common.add_argument_group("security (see the README's Security section)")
    secure.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS, trusting the system's root certificates",
    )
    secure.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM CA bundle to trust instead of the system roots (implies --tls)",
    )
    secure.add_argument(
        "--tls-cert", metavar="FILE", help="PEM client certificate for mutual TLS (with --tls-key)"
    )
    secure.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    secure.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="name to verify the server's certificate against, when it "
        "differs from the target's host (e.g. connecting by IP)",
    )
    secure.add_argument(
        "--token", help="bearer token sent as `authorization: Bearer TOKEN` (default: $ZAKO_TOKEN)"
    )
    secure.add_argument(
        "--tenant",
        metavar="NAME",
        help="tenant header for quotas when the server has no tokens (default: $ZAKO_TENANT)",
    )
    parser = argparse.ArgumentParser(
        prog="zako",
        description="Run JavaScript on a Zako server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        parents=[common],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run a JS file and print its value as JSON",
        description="Run FILE (CommonJS: module.exports = value or (input, context) => value) "
        "and print the value as JSON on stdout; console lines go to stderr.",
    )
    run.add_argument("file", metavar="FILE", help="the entry module, or - for stdin")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="JSON", help="the input, as JSON text")
    source.add_argument("--input-file", metavar="PATH", help="read the input JSON from PATH")
    run.add_argument(
        "--context",
        choices=CONTEXT_NAMES,
        default="build",
        help="capability profile (default: build)",
    )
    run.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="task timeout (default: the server's)"
    )
    run.add_argument(
        "--module",
        action="append",
        type=_key_value,
        default=[],
        metavar="NAME=PATH",
        help="an extra module `require(NAME)` loads; repeat",
    )
    run.add_argument(
        "--modules",
        metavar="DIR",
        help="send DIR as the task's module tree (a project with its node_modules); FILE "
        "inside DIR keeps its path there, so `require`/`import` resolve as Node would. "
        "The tree goes by digest: the server is sent only the files it does not hold yet",
    )
    run.add_argument(
        "--cache",
        choices=("use", "refresh", "skip"),
        help="how the task uses the server's action cache: use an earlier identical "
        "task's outcome (the server's default), refresh it (run and store anew), or skip "
        "it; --full shows whether the result was cached",
    )
    run.add_argument(
        "--label",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a label visible as context.labels; repeat",
    )
    run.add_argument("--priority", type=int, default=0, help="lower runs sooner (default: 0)")
    run.add_argument(
        "--system-access",
        action="store_true",
        help="ask for clock, randomness and timers (config context only)",
    )
    run.add_argument(
        "--fresh-isolate",
        action="store_true",
        help="run in a fresh V8 isolate, not a warm one reused across the "
        "tenant's tasks (for code that patches built-ins)",
    )
    run.add_argument(
        "--epoch",
        type=_epoch,
        help="what Date.now() reads in a hermetic context: ISO 8601 with a zone "
        "(2024-06-01T00:00:00Z) or seconds since 1970 (default: the server's fixed epoch)",
    )
    run.add_argument(
        "--seed",
        help="seed for Math.random/crypto in a hermetic context "
        "(default: derived from the task's content)",
    )
    run.add_argument("--task-id", help="the task id (default: a random one)")
    output = run.add_mutually_exclusive_group()
    output.add_argument(
        "--compact",
        action="store_true",
        help="print the value exactly as the server sent it, on one line",
    )
    output.add_argument(
        "--full",
        action="store_true",
        help="print the whole result: value, logs, timings, heap, worker",
    )

    stats = commands.add_parser(
        "stats", parents=[common], help="print the server's stats as a table (or JSON)"
    )
    stats.add_argument(
        "--all",
        action="store_true",
        help="ask every replica; print their sum and each one's summary",
    )
    stats.add_argument(
        "--json",
        action="store_true",
        help="print the stats as JSON: field names as in the proto's StatsResponse, "
        "durations in seconds (uptime, *_seconds), times in ISO 8601",
    )
    stats.add_argument(
        "--watch",
        type=_positive,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="print again every SECONDS (default 2) until Ctrl-C",
    )
    stats.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # for tests
    commands.add_parser(
        "gc",
        parents=[common],
        help="collect garbage on every worker; print the report as JSON "
        "(fields as in BroadcastGCResponse)",
    )
    commands.add_parser(
        "capabilities",
        parents=[common],
        help="print what the server accepts as JSON (fields as in CapabilitiesResponse; "
        "timeouts in seconds, context kinds by name)",
    )
    cancel = commands.add_parser(
        "cancel",
        parents=[common],
        help='cancel a task by id (asks every replica); prints {"previous_state": '
        '"queued" | "running"}',
    )
    cancel.add_argument("task_id", metavar="ID")
    cancel.add_argument("--reason", default="cancelled from the zako CLI")
    return parser


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


def _run(client: Client, args: argparse.Namespace, out: TextIO) -> int:
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


def _to_json(answer: JsonView | CancelResult) -> str:
    """The SDK value's own JSON view: proto field names, zeros printed (so that
    `jq '.pool.busy > 0'` works), durations in seconds, enums by short name."""
    return json.dumps(answer.to_dict(), indent=2, ensure_ascii=False)


def _read_pem(path: str, what: str, marker: str) -> bytes:
    """The file's bytes, refusing early what is not PEM: gRPC would only fail later, at
    the handshake, with a message that names neither the file nor the option."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise UsageError(f"{what} {path!r} is not a PEM file with a {marker.strip('- ')}")
    return data


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    """Client keyword arguments from the security options and ZAKO_TOKEN / ZAKO_TENANT."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together (a client certificate and its key)")
    credentials = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_server_name:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=args.tls_ca and _read_pem(args.tls_ca, "--tls-ca", "CERTIFICATE"),
            private_key=args.tls_key and _read_pem(args.tls_key, "--tls-key", "PRIVATE KEY"),
            certificate_chain=args.tls_cert
            and _read_pem(args.tls_cert, "--tls-cert", "CERTIFICATE"),
        )
    options = (
        [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else None
    )
    token = (args.token or os.environ.get("ZAKO_TOKEN") or "").strip()
    if token and not (token.isascii() and token.isprintable()):
        raise UsageError("the token must be printable ASCII (a header value)")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    tenant = args.tenant or os.environ.get("ZAKO_TENANT") or None
    return {"credentials": credentials, "options": options, "metadata": metadata, "tenant": tenant}


def _stats_frame(client: Client, args: argparse.Namespace) -> tuple[str, int]:
    """One snapshot as printed, and the exit status it implies.

    `--all` prints even when some replica did not answer (the rest is still worth
    seeing); the status then says the picture is incomplete. Its JSON is
    {"total": …, "replicas": {target: …}, "errors": {target: "…"}}.
    """
    if not args.all:
        stats = client.stats()
        return (
            _to_json(stats) + "\n" if args.json else render_stats(stats, title=client.target)
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


def _stats(client: Client, args: argparse.Namespace, out: TextIO) -> int:
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


_ADMIN: dict[str, Callable[[Client, argparse.Namespace], JsonView | CancelResult]] = {
    "gc": lambda client, _: client.gc(),
    "capabilities": lambda client, _: client.capabilities(),
    "cancel": lambda client, args: client.cancel(args.task_id, args.reason),
}


def _exit_code(error: ZakoError) -> int:
    if isinstance(error, Unauthenticated):
        return EXIT_UNAUTHENTICATED
    if isinstance(error, PermissionDenied):
        return EXIT_PERMISSION_DENIED
    if isinstance(error, TaskRejected):
        return EXIT_REJECTED
    if isinstance(error, TaskError):
        return EXIT_TASK_FAILED
    return EXIT_UNAVAILABLE


def _describe(error: ZakoError) -> str:
    if isinstance(error, TaskRejected):
        hint = f" (retry after {error.retry_after:g} s)" if error.retry_after else ""
        where = f" [{error.field}]" if error.field else ""
        return f"zako: task rejected: {error}{where}{hint}"
    if isinstance(error, TaskError):
        return str(error)  # the JS error and its stack, as the author would read them
    if isinstance(error, Unauthenticated):
        return (
            f"zako: not authenticated: {str(error) or 'no details'} (check --token or ZAKO_TOKEN)"
        )
    if isinstance(error, PermissionDenied):
        return f"zako: permission denied: {str(error) or 'no details'} (check the token's role)"
    if isinstance(error, RPCError):
        return f"zako: call failed: {error}"
    if isinstance(error, TransportError):
        return f"zako: cannot reach the server: {error}"
    return f"zako: {error}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `zako`; returns the exit status (see `zako --help`).

    assert main(["run", "hello.js", "--input", "1"]) == 0
    """
    parser = build_parser(os.environ.get("ZAKO_TARGET") or DEFAULT_TARGET)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        client = Client(args.target, **_connection(args))
    except (UsageError, ValueError) as exc:  # an unreadable PEM file, an empty --target
        print(f"zako: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            if args.command == "run":
                return _run(client, args, sys.stdout)
            if args.command == "stats":
                return _stats(client, args, sys.stdout)
            print(_to_json(_ADMIN[args.command](client, args)), file=sys.stdout)
            return EXIT_OK
    except UsageError as exc:
        print(f"zako: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ZakoError as exc:
        print(_describe(exc), file=sys.stderr)
        return _exit_code(exc)
    except KeyboardInterrupt:
        print("zako: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
