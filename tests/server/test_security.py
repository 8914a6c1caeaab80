"""TLS, mutual TLS, bearer tokens and roles, through a real server on loopback.

The certificates come from the `pki` fixture of tests/conftest.py (a throwaway CA).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

ADMIN = "admin-token-0123456789"
ACME = "acme-client-token-0123"
BETA = "beta-client-token-0123"
TOKENS = f"{ADMIN}:ops:admin,{ACME}:acme:client,{BETA}:beta:client"


def secure_channel(target, pki, *, client_cert: bool):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca.pem"].read_bytes(),
        private_key=pki["client.key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client.pem"].read_bytes() if client_cert else None,
    )
    return grpc.aio.secure_channel(target, credentials)


async def run_one(channel, **metadata):
    stub = pb_grpc.ExecutorStub(channel)
    return await stub.Run(
        pb.RunRequest(task=pb.Task(source="module.exports = 7")),
        metadata=tuple(metadata.items()),
        timeout=20,
    )


async def test_tls_serves_trusted_clients_and_refuses_plaintext(server_factory, pki):
    server = server_factory(tls_cert=pki["server.pem"], tls_key=pki["server.key"])
    async with secure_channel(server.target, pki, client_cert=False) as channel:
        assert (await run_one(channel)).completed.result.value_json == "7"
    async with grpc.aio.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await run_one(channel)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(server_factory, pki):
    server = server_factory(
        tls_cert=pki["server.pem"], tls_key=pki["server.key"], tls_client_ca=pki["ca.pem"]
    )
    async with secure_channel(server.target, pki, client_cert=True) as channel:
        assert (await run_one(channel)).completed.result.value_json == "7"
    async with secure_channel(server.target, pki, client_cert=False) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await run_one(channel)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def auth_server(server_factory):
    return server_factory(auth_tokens=TOKENS, max_workers=1)


def bearer(token):
    return {"authorization": f"Bearer {token}"}


async def test_calls_without_a_valid_token_are_unauthenticated(auth_server):
    async with grpc.aio.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for metadata in ({}, bearer("not-a-real-token-at-all"), {"authorization": ADMIN}):
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await run_one(channel, **metadata)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Stats(pb.StatsRequest())
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call = stub.Submit()  # the server refuses the stream before it reads anything
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call.read()
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Probes stay open: Kubernetes calls health without a token.
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_roles_gc_is_admin_only_and_tenants_see_their_own(auth_server):
    async with grpc.aio.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        assert (await run_one(channel, **bearer(ACME))).completed.result.value_json == "7"
        assert (await run_one(channel, **bearer(BETA))).completed.result.value_json == "7"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.BroadcastGC(pb.BroadcastGCRequest(), metadata=tuple(bearer(ACME).items()))
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        reply = await stub.BroadcastGC(
            pb.BroadcastGCRequest(), metadata=tuple(bearer(ADMIN).items()), timeout=20
        )
        assert len(reply.workers) >= 1
        seen_by_acme = await stub.Stats(pb.StatsRequest(), metadata=tuple(bearer(ACME).items()))
        assert [t.tenant for t in seen_by_acme.tenants] == ["acme"]
        seen_by_admin = await stub.Stats(pb.StatsRequest(), metadata=tuple(bearer(ADMIN).items()))
        assert {t.tenant for t in seen_by_admin.tenants} == {"acme", "beta"}


async def test_a_client_may_cancel_only_its_own_tenants_tasks(auth_server):
    async with grpc.aio.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        as_acme = tuple(bearer(ACME).items())
        running = asyncio.ensure_future(
            stub.Run(
                pb.RunRequest(
                    task=pb.Task(
                        id="acme-loop", source="while (true) {}", timeout=Duration(seconds=30)
                    )
                ),
                metadata=as_acme,
            )
        )
        for _ in range(250):
            stats = await stub.Stats(pb.StatsRequest(), metadata=tuple(bearer(ADMIN).items()))
            if stats.pool.busy:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Cancel(
                pb.CancelRequest(task_id="acme-loop"), metadata=tuple(bearer(BETA).items())
            )
        # Ids are per tenant (#12): beta has no task of that name, and learns nothing.
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        await stub.Cancel(pb.CancelRequest(task_id="acme-loop"), metadata=as_acme)
        assert (await running).WhichOneof("outcome") == "cancelled"


async def test_plaintext_health_port_beside_a_tls_main_port(server_factory, pki):
    server = server_factory(
        tls_cert=pki["server.pem"], tls_key=pki["server.key"], health_listen="127.0.0.1:0"
    )
    assert server.server.health_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="zako.v1.Executor"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as exc:  # health only, nothing else
            await run_one(channel)
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await asyncio.to_thread(server.call, server.server.health.enter_graceful_shutdown())
        reply = await health.Check(health_pb2.HealthCheckRequest(service="zako.v1.Executor"))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
