"""The issue-16 report parts over hand-made loads (pure arithmetic; the smoke run in
test_bench_smoke.py covers them over real ones)."""

from __future__ import annotations

import pytest

from bench.common import Load
from bench.issues import FLOOR_LABELS, floor_targets_16, reach_table, targets_16


def _load(name: str, rate: float, p50_ms: float, **cpu_ms: float) -> Load:
    """A load of 100 operations at `rate` per second, each `p50_ms` long, with `cpu_ms`
    of CPU per operation for each role."""
    n = 100
    return Load(
        name,
        1,
        latencies=[p50_ms / 1e3] * n,
        elapsed=n / rate,
        cpu={role: ms * n / 1e3 for role, ms in cpu_ms.items()},
    )


def _peer(reused_cpu: float) -> dict[str, object]:
    reused = _load("stream", 1000, 5, client=reused_cpu / 2, server=reused_cpu / 2)
    return {"systems": {"peer_reused": {"loads": {"stream": reused}}}}


LOADS = {
    "echo_stream": _load("echo_stream", 4000, 10, client=0.27, server=0.27),
    "echo_unary": _load("echo_unary", 1000, 1.0, client=0.4, server=0.6),
    "zako_stream": _load("zako_stream", 800, 70, client=0.34, server=0.76, workers=0.72),
    "zako_unary": _load("zako_unary", 200, 4.8, client=1.3, server=2.5, workers=1.6),
    # Meets the throughput target, misses the rest.
    "floor_stream": _load("floor_stream", 2400, 30, client=0.30, server=0.38, workers=0.26),
    "floor_unary": _load("floor_unary", 400, 2.5, client=0.8, server=1.4, workers=0.7),
}


def test_the_floor_is_judged_by_the_targets_own_bounds() -> None:
    floor = {t.key: t for t in floor_targets_16(LOADS, _peer(0.46))}
    assert set(floor) == set(FLOOR_LABELS)
    assert floor["i16_server_worker_cpu"].value == pytest.approx(0.64)
    assert floor["i16_stream_vs_echo"].value == pytest.approx(2400 / 4000)
    assert floor["i16_unary_vs_echo"].value == pytest.approx(2.5)
    assert floor["i16_client_cpu"].value == pytest.approx(0.30)
    assert floor["i16_cpu_vs_reused_peer"].value == pytest.approx((0.30 + 0.38 + 0.26) / 0.46)
    status = {key: t.status for key, t in floor.items()}
    assert status == {
        "i16_server_worker_cpu": "MISS",
        "i16_stream_vs_echo": "PASS",
        "i16_unary_vs_echo": "MISS",
        "i16_client_cpu": "MISS",
        "i16_cpu_vs_reused_peer": "MISS",
    }
    # The bounds are the targets' own: the same key, the same bound, either way.
    zako = {t.key: t for t in targets_16(LOADS, _peer(0.46))}
    for key, target in floor.items():
        assert (target.bound, target.higher_is_better) == (
            zako[key].bound,
            zako[key].higher_is_better,
        )
        assert target.title.startswith("the floor: ")


def test_the_table_puts_each_target_beside_the_floors_figure() -> None:
    zako = targets_16(LOADS, _peer(0.46))
    lines = reach_table(zako, floor_targets_16(LOADS, _peer(0.46)))
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    stream = rows[FLOOR_LABELS["i16_stream_vs_echo"]]
    assert "0.20 MISS" in stream and "0.60 PASS" in stream
    cpu = rows[FLOOR_LABELS["i16_server_worker_cpu"]]
    assert "1.48 MISS" in cpu and "0.64 MISS" in cpu
    assert len(rows) == 1 + len(FLOOR_LABELS)  # the header, then one row per target


def test_no_floor_no_table() -> None:
    loads = {k: v for k, v in LOADS.items() if not k.startswith("floor")}
    assert floor_targets_16(loads, None) == []
    assert reach_table(targets_16(loads, None), []) == []
    # Without the peer section the reused-peer row has no figure, not a made-up one.
    floor = {t.key: t for t in floor_targets_16(LOADS, None)}
    assert floor["i16_cpu_vs_reused_peer"].status == "n/a"
