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

The command is split by concern: its arguments and exit statuses in `_cli_args.py`, what
each command does in `_cli_commands.py`, the stats tables in `_table.py`; here `main()`
connects (TLS, token, tenant), dispatches, and turns errors into messages and statuses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from zako_sdk._channel import DEFAULT_TARGET
from zako_sdk._cli_args import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PERMISSION_DENIED,
    EXIT_REJECTED,
    EXIT_TASK_FAILED,
    EXIT_UNAUTHENTICATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UsageError,
    build_parser,
)
from zako_sdk._cli_commands import ADMIN_COMMANDS, run_command, stats_command, to_json
from zako_sdk._sync import Client
from zako_sdk.errors import (
    PermissionDenied,
    RPCError,
    TaskError,
    TaskRejected,
    TransportError,
    Unauthenticated,
    ZakoError,
)

__all__ = ["main"]


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
                return run_command(client, args, sys.stdout)
            if args.command == "stats":
                return stats_command(client, args, sys.stdout)
            print(to_json(ADMIN_COMMANDS[args.command](client, args)), file=sys.stdout)
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
