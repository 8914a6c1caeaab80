"""Target parsing, per-target channel options, and the summing of replicas' Stats."""

from __future__ import annotations

import json

import pytest
from google.protobuf import duration_pb2

from zako_sdk._channel import ROUND_ROBIN_SERVICE_CONFIG, channel_options
from zako_sdk._sum import sum_stats
from zako_sdk._targets import address_target, dns_host_port, is_balanced, parse_targets
from zako_sdk.proto.zako.v1 import executor_pb2 as pb


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:50051", ("127.0.0.1:50051",)),
        ("h1:1,h2:2", ("h1:1", "h2:2")),
        (" h1:1 , h2:2 ,", ("h1:1", "h2:2")),
        (["h1:1", "h2:2"], ("h1:1", "h2:2")),
        (("h1:1,h2:2", "h3:3"), ("h1:1", "h2:2", "h3:3")),
        ("h1:1,h1:1,h2:2", ("h1:1", "h2:2")),  # a repeat would get a double share
        ("dns:///zako-headless.ns.svc:50051", ("dns:///zako-headless.ns.svc:50051",)),
        ("unix:///tmp/zako.sock", ("unix:///tmp/zako.sock",)),
    ],
)
def test_targets_parse(given, expected):
    assert parse_targets(given) == expected


@pytest.mark.parametrize("bad", ["", " , ", []])
def test_no_target_is_an_error(bad):
    with pytest.raises(ValueError, match="no target"):
        parse_targets(bad)


def test_a_target_must_be_a_string():
    with pytest.raises(TypeError):
        parse_targets([("h", 1)])  # type: ignore[list-item]


def test_only_dns_targets_are_balanced():
    assert is_balanced("dns:///name:1") and is_balanced("dns:name:1")
    assert not is_balanced("name:1") and not is_balanced("ipv4:1.2.3.4:5")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("dns:///zako-headless:50051", ("zako-headless", 50051)),
        ("dns://8.8.8.8/zako.example.com:7000", ("zako.example.com", 7000)),
        ("dns:zako:1", ("zako", 1)),
        ("dns:///zako", ("zako", 443)),  # gRPC's own default port
        ("dns:///[::1]:50051", ("::1", 50051)),
        ("dns:///127.0.0.1:9", ("127.0.0.1", 9)),
    ],
)
def test_dns_host_and_port(target, expected):
    assert dns_host_port(target) == expected


@pytest.mark.parametrize("bad", ["dns:///:50051", "dns:///name:port"])
def test_bad_dns_targets(bad):
    with pytest.raises(ValueError):
        dns_host_port(bad)


def test_address_targets_name_one_address():
    assert address_target("10.0.0.7", 50051) == "ipv4:10.0.0.7:50051"
    assert address_target("fd00::7", 50051) == "ipv6:[fd00::7]:50051"


def test_balanced_channels_get_round_robin_and_everyone_keepalive():
    plain = dict(channel_options(None))
    balanced = dict(channel_options(None, balanced=True))
    assert "grpc.service_config" not in plain
    config = json.loads(balanced["grpc.service_config"])
    assert config == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert balanced["grpc.service_config"] == ROUND_ROBIN_SERVICE_CONFIG
    # What the server permits (pings >= 10 s apart, without calls): we ping every 30 s.
    assert plain["grpc.keepalive_time_ms"] == 30_000
    assert plain["grpc.keepalive_timeout_ms"] == 10_000
    assert plain["grpc.keepalive_permit_without_calls"] == 1


def _stats(n: int) -> pb.StatsResponse:
    return pb.StatsResponse(
        uptime=duration_pb2.Duration(seconds=10 * n),
        pool=pb.PoolStats(max_workers=2, live=n, busy=n, started_total=n),
        queue=pb.QueueStats(depth=n, capacity=1024, depth_by_priority={0: n}),
        tasks=pb.TaskCounters(
            accepted=10 * n,
            completed=9 * n,
            failed=n,
            failed_by_reason={"TIMEOUT": n},
            rejected_by_reason={"UNAVAILABLE": n},
        ),
        resources=[pb.ResourceStats(name="cpu", capacity=1000, in_use=100 * n)],
        tenants=[
            pb.TenantStats(tenant=f"t{n}", accepted=n),
            pb.TenantStats(tenant="anonymous", accepted=n),
        ],
        queue_wait=pb.Histogram(
            bounds_seconds=[0.1, 1.0], counts=[n, 0, 0], count=n, sum_seconds=0.05 * n
        ),
        versions=pb.VersionInfo(server=f"0.{n}", protocol="zako.v1"),
    )


def test_stats_sum_counters_gauges_and_rows_by_name():
    total = sum_stats([_stats(1), _stats(2)])
    assert (total.pool.max_workers, total.pool.busy, total.pool.started_total) == (4, 3, 3)
    assert (total.queue.depth, total.queue.capacity) == (3, 2048)
    assert dict(total.queue.depth_by_priority) == {0: 3}
    assert (total.tasks.accepted, total.tasks.completed, total.tasks.failed) == (30, 27, 3)
    assert dict(total.tasks.failed_by_reason) == {"TIMEOUT": 3}
    assert dict(total.tasks.rejected_by_reason) == {"UNAVAILABLE": 3}
    assert [(r.name, r.capacity, r.in_use) for r in total.resources] == [("cpu", 2000, 300)]
    assert {t.tenant: t.accepted for t in total.tenants} == {"t1": 1, "anonymous": 3, "t2": 2}
    assert total.uptime.seconds == 20  # the longest, not a sum
    assert total.versions.server == "0.1,0.2" and total.versions.protocol == "zako.v1"


def test_stats_sum_histograms_and_reestimate_percentiles():
    total = sum_stats([_stats(1), _stats(3)])
    assert list(total.queue_wait.counts) == [4, 0, 0] and total.queue_wait.count == 4
    assert total.queue_wait.sum_seconds == pytest.approx(0.2)
    assert 0 < total.queue_wait.p50_seconds <= 0.1  # inside the first bucket


def test_stats_sum_of_nothing_is_empty():
    assert sum_stats([]) == pb.StatsResponse(
        queue_wait=pb.Histogram(), run_time=pb.Histogram(), versions=pb.VersionInfo()
    )
