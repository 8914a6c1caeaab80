"""The caches' figures (issue #15) as SDK values: from the wire, summed, as JSON and as text."""

from __future__ import annotations

import json

from zako_sdk import Capabilities
from zako_sdk._cli_args import EXIT_OK
from zako_sdk._sum import sum_stats
from zako_sdk._table import render_cluster, render_stats
from zako_sdk.cli import main
from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.stats import ActionCacheStats, CasStats, CodeCacheStats, Stats


def message(scale: int = 1) -> pb.StatsResponse:
    return pb.StatsResponse(
        cas=cas_pb2.CasStats(
            blobs=10 * scale,
            bytes=3 << 20,
            capacity_bytes=64 << 20,
            evictions=2,
            hits=90 * scale,
            misses=10 * scale,
            uploads=12,
            uploaded_bytes=4 << 20,
            missing_rejections=1,
        ),
        action_cache=cas_pb2.ActionCacheStats(
            enabled=True,
            entries=5,
            bytes=2048,
            capacity_bytes=32 << 20,
            hits=6 * scale,
            misses=3 * scale,
            joins=1 * scale,
            stores=3,
            evictions=0,
        ),
        code_cache=cas_pb2.CodeCacheStats(
            source_hits=30,
            source_misses=10,
            source_bytes_sent=1 << 20,
            compiled_hits=3,
            compiled_misses=1,
        ),
    )


def test_the_cache_figures_and_their_rates():
    stats = Stats.from_proto(message())
    assert stats.cas == CasStats(10, 3 << 20, 64 << 20, 2, 90, 10, 12, 4 << 20, 1)
    assert stats.cas.hit_rate == 0.9
    assert stats.action_cache == ActionCacheStats(True, 5, 2048, 32 << 20, 6, 3, 1, 3, 0)
    assert stats.action_cache.hit_rate == 0.7  # hits and joins did not run: 7 of 10
    assert stats.code_cache == CodeCacheStats(30, 10, 1 << 20, 3, 1)
    assert (stats.code_cache.source_hit_rate, stats.code_cache.compiled_hit_rate) == (0.75, 0.75)
    assert Stats().cas.hit_rate == 0.0  # nothing asked yet: no division by zero


def test_json_has_the_proto_fields_and_the_rates():
    document = json.loads(json.dumps(Stats.from_proto(message()).to_dict()))
    assert document["cas"]["evictions"] == 2 and document["cas"]["hit_rate"] == 0.9
    assert document["action_cache"]["joins"] == 1 and document["action_cache"]["hit_rate"] == 0.7
    assert document["code_cache"]["source_hit_rate"] == 0.75


def test_a_cluster_sums_the_counts_and_derives_its_rate_from_the_sums():
    total = Stats.from_proto(sum_stats([message(1), message(3)]))
    assert total.cas.blobs == 40 and total.cas.capacity_bytes == 128 << 20
    assert total.cas.hit_rate == 0.9
    assert total.action_cache.enabled and total.action_cache.hits == 24
    assert total.code_cache.source_bytes_sent == 2 << 20


def test_the_table_shows_each_cache():
    text = render_stats(Stats.from_proto(message()))
    assert "CAS  blobs 10  3.0 MiB of 64.0 MiB  hit rate 90.0% (hits 90, misses 10)" in text
    assert "uploads 12 (4.0 MiB)  evictions 2  missing rejections 1" in text
    assert "ACTION CACHE  entries 5  2.0 KiB of 32.0 MiB  hit rate 70.0% (hits 6, joins 1" in text
    assert "CODE CACHE  sources: hit rate 75.0%" in text
    assert "ACTION CACHE  off" in render_stats(Stats())
    one = Stats.from_proto(message())
    cluster = render_cluster(one, {"a:1": one}, {})
    assert "CACHED" in cluster.splitlines()[-2] and cluster.splitlines()[-1].split()[-2] == "7"


def test_capabilities_say_what_the_store_takes():
    caps = Capabilities.from_proto(
        pb.CapabilitiesResponse(
            limits=pb.Limits(
                max_tree_bytes=48 << 20, max_blob_bytes=16 << 20, cas_capacity_bytes=1 << 30
            ),
            action_cache=True,
        )
    )
    assert (caps.limits.max_tree_bytes, caps.limits.max_blob_bytes) == (48 << 20, 16 << 20)
    assert caps.limits.cas_capacity_bytes == 1 << 30 and caps.action_cache is True


def test_zako_stats_json_on_a_real_server(zako_server, capsys):
    assert main(["stats", "--json", "--target", zako_server.target]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["cas"]["capacity_bytes"] > 0 and "hit_rate" in document["cas"]
    assert {"hits", "misses", "joins", "hit_rate"} <= set(document["action_cache"])
    assert main(["stats", "--target", zako_server.target]) == EXIT_OK
    assert "CACHES" in capsys.readouterr().out
