"""Server lifecycle: start-up, serve, staged shutdown.

    start:    pool (warm workers ready) ─▶ grpc.aio server (Executor, health, reflection)
              ─▶ bind ─▶ health SERVING
    shutdown: admission closed (new tasks → UNAVAILABLE) + health NOT_SERVING
              ─▶ tasks in flight get `drain_grace` to finish ─▶ the rest are cancelled
              (each with its terminal event) ─▶ gRPC stops ─▶ workers exit (killed if stuck)

`ZakoServer` is built from Settings and knows nothing of signals or the command line, so
tests run it in-process on port 0; `__main__` adds the signal handling.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import TracerProvider

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.action_cache import ActionCache
from zako_server.server.admission import Admission
from zako_server.server.cas import ContentStore
from zako_server.server.engine import Engine
from zako_server.server.heuristics import owns_cpus
from zako_server.server.metrics import Metrics
from zako_server.server.pool import Pool
from zako_server.server.quotas import AdmissionPolicy
from zako_server.server.security import Authenticator, TlsFiles
from zako_server.server.service import ExecutorService, add_to_server
from zako_server.server.settings import Settings
from zako_server.server.tracing import Tracing
from zako_server.server.transforms import TransformPool, default_processes
from zako_server.server.worker_set import PoolSettings

log = logging.getLogger("zako.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Executor"].full_name


def keepalive_options(settings: Settings) -> list[tuple[str, int]]:
    """HTTP/2 keepalive: the server pings every connection each `keepalive_time` and
    closes one that does not answer within `keepalive_timeout`, which cancels its calls
    and so its tasks: a client that is stopped or gone (its TCP still open) holds a
    worker for seconds, not for its task's whole timeout. Pings go even without data in
    flight (max_pings_without_data 0), since a dead peer sends none. gRPC core waits
    `ping_timeout_ms` (a minute by default) for a ping's answer whatever
    keepalive_timeout says, so both are set. Clients may ping
    every 10 s even without calls (the SDK does), so they notice a dead server too."""
    return [
        ("grpc.keepalive_time_ms", int(settings.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", int(settings.keepalive_timeout * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


class ZakoServer:
    """One running Zako server: its pool, engine, gRPC server and health state."""

    def __init__(self, settings: Settings, tracer_provider: TracerProvider | None = None) -> None:
        self.settings = settings
        self.tracing = Tracing(tracer_provider)
        self.pool = Pool(
            PoolSettings(
                min_workers=settings.min_workers,
                max_workers=settings.max_workers,
                idle_timeout=settings.idle_timeout,
                cancel_grace=settings.cancel_grace,
                worker_start_timeout=settings.worker_start_timeout,
                worker_rss_margin=settings.worker_rss_margin,
                heartbeat_interval=settings.worker_heartbeat_interval,
                heartbeat_timeout=settings.worker_heartbeat_timeout,
                code_cache_bytes=settings.worker_code_cache_bytes,
                prefetch=settings.worker_prefetch,
                brief_wait=settings.worker_brief_wait,
                pin_cpus=settings.worker_pinning
                and settings.machine is not None
                and owns_cpus(settings.machine),
            )
        )
        self.admission = Admission(
            AdmissionPolicy(
                capacities=settings.capacities(),
                queue_capacity=settings.queue_capacity,
                queue_capacity_bytes=settings.queue_capacity_bytes,
                tenant_max_queued=settings.tenant_max_queued,
                tenant_max_running=settings.tenant_max_running,
                aging=settings.aging,
            ),
            spare_slots=self.pool.spare_slots,
        )
        self.pool.on_spare = self.admission.regrant
        # ESM/TypeScript transforms: a few processes of their own, not a share of the CPUs.
        self.transforms = TransformPool(
            settings.transform_workers or default_processes(), settings.transform_cache_bytes
        )
        self.engine = Engine(
            self.admission,
            self.pool,
            self.tracing.tracer,
            settings.max_message_bytes,
            transforms=self.transforms,
            # Outcomes of hermetic tasks, bounded by action_cache_bytes (action_cache.py).
            action_cache=ActionCache(
                settings.action_cache, settings.action_cache_bytes, settings.max_message_bytes
            ),
        )
        # Module blobs tasks name by digest, bounded by cas_bytes (cas.py).
        self.store = ContentStore.from_settings(settings)
        self.service = ExecutorService(
            settings,
            self.engine,
            Authenticator.from_settings(settings.auth_tokens, settings.auth_tokens_file),
            store=self.store,
        )
        self.health = HealthServicer()
        self.metrics = Metrics()
        self.metrics.attach(self)
        self.port = 0
        self.health_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._health_grpc: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()
        self._shutdown_task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Start workers and the gRPC server; returns the bound port."""
        await asyncio.gather(self.pool.start(), self.transforms.start())
        limit = self.settings.max_message_bytes
        # RPC figures can only be read on the metrics port: without one, counting them is
        # pure cost (the interceptor adds a generator layer to every streamed message).
        rpc_metrics = [self.metrics.interceptor] if self.settings.metrics_listen else []
        interceptors = [*self.tracing.interceptors(), *rpc_metrics]
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                # Twice ours: a request up to 2x max_message_bytes is read and refused
                # by the service alone, precisely and counted (decoding.Refused);
                # gRPC refuses larger ones itself.
                ("grpc.max_receive_message_length", 2 * limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
                *keepalive_options(self.settings),
            ],
        )
        add_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        try:
            if self.settings.tls_cert:
                cert, key, client_ca = TlsFiles(
                    self.settings.tls_cert, self.settings.tls_key, self.settings.tls_client_ca
                ).load()
                credentials = grpc.ssl_server_credentials(
                    [(key, cert)],
                    root_certificates=client_ca,
                    require_client_auth=client_ca is not None,
                )
                self.port = server.add_secure_port(self.settings.listen, credentials)
            else:
                self.port = server.add_insecure_port(self.settings.listen)
        except (RuntimeError, ValueError) as exc:
            await self.pool.close()
            await self.transforms.close()
            raise OSError(f"cannot listen on {self.settings.listen}: {exc}") from exc
        await server.start()
        self._grpc = server
        if self.settings.health_listen:
            # Kubelet gRPC probes speak plaintext only: with TLS on the main port, health
            # is also served here (same servicer, so drain shows on both).
            health_only = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, health_only)
            try:
                self.health_port = health_only.add_insecure_port(self.settings.health_listen)
            except RuntimeError as exc:
                await self.shutdown(drain_grace=0)
                raise OSError(
                    f"cannot serve health on {self.settings.health_listen}: {exc}"
                ) from exc
            await health_only.start()
            self._health_grpc = health_only
        if self.settings.metrics_listen:
            try:
                self.metrics.serve(self.settings.metrics_listen)
            except OSError as exc:
                await self.shutdown(drain_grace=0)
                raise OSError(
                    f"cannot serve metrics on {self.settings.metrics_listen}: {exc}"
                ) from exc
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    @property
    def address(self) -> str:
        host = self.settings.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def request_shutdown(self) -> asyncio.Task[None]:
        """Begin the staged shutdown once; later calls return the same task."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(self.shutdown(), name="zako-shutdown")
        return self._shutdown_task

    async def shutdown(self, drain_grace: float | None = None) -> None:
        grace = self.settings.drain_grace if drain_grace is None else drain_grace
        self.service.draining = True
        self.admission.close()
        await self.health.enter_graceful_shutdown()
        live = self.engine.live_count()
        if live:
            log.info("draining: %d task(s) in flight get %.1fs to finish", live, grace)
        if not await self.engine.wait_idle(grace):
            log.warning("drain grace over: cancelling %d task(s)", self.engine.live_count())
            self.engine.cancel_all("server shutdown")
            await self.engine.wait_idle(self.settings.cancel_grace + 2.0)
        if self._grpc is not None:
            # Streams get a moment to flush their last (terminal) events.
            await self._grpc.stop(grace=1.0)
        if self._health_grpc is not None:
            await self._health_grpc.stop(grace=0.5)
        await self.pool.close()
        await self.transforms.close()
        await self.admission.aclose()
        self.metrics.close()
        self.tracing.shutdown()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def create_server(settings: Settings) -> tuple[ZakoServer, int]:
    """Build and start a server; returns it and the port it bound (for port 0)."""
    server = ZakoServer(settings)
    port = await server.start()
    return server, port
