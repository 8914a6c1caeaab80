"""Fixtures that start a real Zako server on an ephemeral loopback port.

The server runs on its own event loop in a background thread, so sync tests (and the
sync SDK client, which has its own loop thread) and async tests can all talk to it over
real gRPC, with real V8 worker processes behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zako_server.server.app import ZakoServer
from zako_server.server.config import build_settings
from zako_server.server.settings import Settings


@dataclass
class RunningServer:
    """A server on a private loop thread; `call` runs a coroutine on that loop."""

    server: ZakoServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def settings(self) -> Settings:
        return self.server.settings

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.call(self.server.shutdown(drain_grace=0.5), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def test_settings(**overrides: Any) -> Settings:
    flags = {
        "listen": "127.0.0.1:0",
        "min_workers": "1",
        "max_workers": "2",
        "idle_timeout": "60",
        "drain_grace": "2",
    }
    flags.update({key: str(value) for key, value in overrides.items()})
    return build_settings(flags, env={})


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


def start_server(settings: Settings, tracer_provider: Any = None) -> RunningServer:
    loop = asyncio.new_event_loop()
    started: Future[ZakoServer] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                server = ZakoServer(settings, tracer_provider)
                await server.start()
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(server)

        boot_task = loop.create_task(boot())
        loop.run_forever()
        del boot_task
        # Finish whatever the shutdown left scheduled, then close the loop.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, name="zako-test-server", daemon=True)
    thread.start()
    server = started.result(timeout=60)
    return RunningServer(server, loop, thread)


@pytest.fixture(scope="session")
def zako_server() -> Iterator[RunningServer]:
    """One shared server for tests that do not change its state in lasting ways."""
    running = start_server(test_settings())
    yield running
    running.stop()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    """Start private servers with custom settings; all are stopped after the test."""
    servers: list[RunningServer] = []

    def make(tracer_provider: Any = None, **overrides: Any) -> RunningServer:
        running = start_server(test_settings(**overrides), tracer_provider)
        servers.append(running)
        return running

    yield make
    for running in servers:
        running.stop()


def _cert(
    subject: str,
    key: Any,
    issuer_name: x509.Name,
    issuer_key: Any,
    *,
    ca: bool,
    server: bool = False,
) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA with a server certificate (127.0.0.1, localhost) and a client one:
    ca.pem, server.pem, server.key, client.pem, client.key."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zako test CA")])
    files = {"ca.pem": _cert("zako test CA", ca_key, ca_name, ca_key, ca=True)}
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{name}.pem"] = _cert(name, key, ca_name, ca_key, ca=False, server=server)
        files[f"{name}.key"] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}
