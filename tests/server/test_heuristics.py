"""Effective CPU and memory from fake cgroup trees, and the defaults derived from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from zako_server.server import heuristics
from zako_server.server.config import build_settings
from zako_server.server.heuristics import (
    Machine,
    cgroup_cpu_limit,
    cgroup_memory_limit,
    default_max_workers,
    owns_cpus,
    probe_machine,
)
from zako_server.server.options import parse_size


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v2_quota_and_memory(tmp_path):
    write(tmp_path, "cpu.max", "150000 100000")
    write(tmp_path, "memory.max", str(512 << 20))
    assert cgroup_cpu_limit(tmp_path)[0] == 1.5
    assert cgroup_memory_limit(tmp_path)[0] == 512 << 20
    machine = probe_machine(tmp_path)
    assert machine.cpus == 1.5 and "cgroup v2" in machine.cpus_source
    assert machine.memory_bytes == 512 << 20 and "memory.max" in machine.memory_source


def test_cgroup_v2_unlimited_falls_back_to_host(tmp_path):
    write(tmp_path, "cpu.max", "max 100000")
    write(tmp_path, "memory.max", "max")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_memory_limit(tmp_path) is None
    assert probe_machine(tmp_path).cpus >= 1


def test_cgroup_v1_quota_and_unlimited_memory(tmp_path):
    write(tmp_path, "cpu/cpu.cfs_quota_us", "300000")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    write(tmp_path, "memory/memory.limit_in_bytes", str(9223372036854771712))
    assert cgroup_cpu_limit(tmp_path)[0] == 3.0
    assert cgroup_memory_limit(tmp_path) is None
    write(tmp_path, "memory/memory.limit_in_bytes", str(1 << 30))
    assert cgroup_memory_limit(tmp_path)[0] == 1 << 30


@pytest.mark.parametrize(("cpus", "workers"), [(0.5, 1), (1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_max_workers_is_half_the_cpus_and_never_zero(cpus, workers):
    assert default_max_workers(Machine(cpus, "test", 1 << 30, "test")) == workers


def test_settings_precedence_flag_over_env_over_heuristic():
    machine = Machine(8, "test", 8 << 30, "test")
    settings = build_settings({}, {}, machine)
    assert settings.max_workers == 4 and "heuristic" in settings.sources["max_workers"]
    settings = build_settings({}, {"ZAKO_MAX_WORKERS": "3"}, machine)
    assert settings.max_workers == 3 and settings.sources["max_workers"] == "env ZAKO_MAX_WORKERS"
    settings = build_settings({"max_workers": "2"}, {"ZAKO_MAX_WORKERS": "3"}, machine)
    assert settings.max_workers == 2 and settings.sources["max_workers"] == "flag --max-workers"


def test_bad_settings_name_the_option_and_source():
    machine = Machine(2, "test", 1 << 30, "test")
    with pytest.raises(ValueError, match="max_workers from env ZAKO_MAX_WORKERS"):
        build_settings({}, {"ZAKO_MAX_WORKERS": "zero"}, machine)
    with pytest.raises(ValueError, match="min_workers"):
        build_settings({"min_workers": "5", "max_workers": "2"}, {}, machine)


def test_parse_size_units():
    assert parse_size("16MiB") == 16 << 20
    assert parse_size("512k") == 512_000
    assert parse_size("1024") == 1024
    with pytest.raises(ValueError):
        parse_size("lots")


def test_every_option_is_a_settings_field_and_shows_in_print_config():
    import dataclasses

    from zako_server.server.options import OPTIONS
    from zako_server.server.settings import Settings

    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {o.name for o in OPTIONS} <= fields
    described = {name for name, _, _ in build_settings({}, {}).describe()}
    assert {o.name for o in OPTIONS} <= described


def test_readme_configuration_table_lists_every_option():
    from pathlib import Path

    from zako_server.server.options import OPTIONS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [o.env for o in OPTIONS if f"`{o.flag}` | `{o.env}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_isolate_reuse_settings_from_flags_and_env():
    machine = Machine(2, "test", 1 << 30, "test")
    defaults = build_settings({}, {}, machine)
    assert (defaults.isolate_reuse, defaults.isolate_max_tasks) == ("tenant", 500)
    settings = build_settings(
        {"isolate_reuse": "never"},
        {"ZAKO_ISOLATE_REUSE": "tenant", "ZAKO_ISOLATE_MAX_TASKS": "20"},
        machine,
    )
    assert settings.isolate_reuse == "never"
    assert settings.isolate_max_tasks == 20
    with pytest.raises(ValueError, match="isolate_reuse from flag --isolate-reuse"):
        build_settings({"isolate_reuse": "sometimes"}, {}, machine)
    with pytest.raises(ValueError, match="isolate_max_tasks from env"):
        build_settings({}, {"ZAKO_ISOLATE_MAX_TASKS": "0"}, machine)


def test_worker_brief_wait_is_0_to_1_second():
    machine = Machine(2, "test", 1 << 30, "test")
    assert build_settings({}, {}, machine).worker_brief_wait == 0.002
    assert build_settings({}, {"ZAKO_WORKER_BRIEF_WAIT": "0"}, machine).worker_brief_wait == 0
    assert build_settings({"worker_brief_wait": "0.25"}, {}, machine).worker_brief_wait == 0.25
    for bad in ("-0.001", "1.5", "soon"):
        with pytest.raises(ValueError, match="worker_brief_wait from flag --worker-brief-wait"):
            build_settings({"worker_brief_wait": bad}, {}, machine)


def test_workers_are_pinned_only_to_cpus_the_server_owns(monkeypatch):
    """A CPU quota narrower than the CPU mask (a pod sharing its node's CPUs) means the
    mask's CPUs are not the server's own: pinning there would stack other pods' workers
    on the same CPUs."""
    monkeypatch.setattr(heuristics.os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    assert owns_cpus(Machine(4.0, "sched_getaffinity", 1 << 30, "test"))
    assert not owns_cpus(Machine(2.0, "cgroup v2 cpu.max", 1 << 30, "test"))
