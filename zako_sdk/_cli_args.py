"""The `zako` command line: its arguments, their types, and the exit statuses it promises.

Its own concern because it is the command's contract, read by people (`zako --help`) and
by scripts (the exit statuses): what each command accepts is declared here once, apart
from what the commands do with it (`_cli_commands.py`) and from `main()` (`cli.py`),
which connects, dispatches and reports. No I/O: parsing only.
"""

from __future__ import annotations

import argparse
import datetime
import signal

from zako_sdk._channel import DEFAULT_TARGET
from zako_sdk.models import CONTEXT_NAMES

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PERMISSION_DENIED",
    "EXIT_REJECTED",
    "EXIT_TASK_FAILED",
    "EXIT_UNAUTHENTICATED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
]

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
