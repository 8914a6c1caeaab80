"""The Node.js peer of issue 16 (bench/peer/server.js) answers the unchanged Zako SDK.

The bench compares Zako with this peer, so the peer must really run the tasks it is
given: these tests drive it through the SDK in both modes and check values, errors and
the stream's events. They skip, saying why, only when node/npm are missing or the pinned
packages cannot be installed.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.common import ServerProcess
from bench.peer import PeerUnavailable, ensure_installed, peer_argv
from zako_sdk import AsyncClient, TaskFailed


@pytest.fixture(scope="module")
def installed() -> None:
    try:
        ensure_installed()
    except PeerUnavailable as exc:
        pytest.skip(f"the Node peer cannot run here: {exc}")


@pytest.mark.parametrize("mode", ["fresh", "reused"])
async def test_peer_runs_tasks_for_the_sdk(installed: None, mode: str) -> None:
    async with (
        ServerProcess(peer_argv(mode), f"peer ({mode})") as server,
        AsyncClient(server.target, retry=None, timeout=30) as client,
    ):
        assert f"mode {mode}" in server.banner
        result = await client.run("module.exports = (x) => x + 1", input=41)
        assert result.value_json == "42"
        assert result.worker_id == "thread-1"  # from the result (run() skips `started`)
        assert result.timings.warm_isolate is (mode == "reused")

        unary = await client.run_unary("module.exports = (x) => ({ twice: x * 2 })", input=21)
        assert unary.value_json == '{"twice":42}'

        many = await asyncio.gather(
            *(client.run("module.exports = async (x) => x * x", input=i) for i in range(50))
        )
        assert [r.value_json for r in many] == [str(i * i) for i in range(50)]

        with pytest.raises(TaskFailed, match="TypeError: nope"):
            await client.run("module.exports = () => { throw new TypeError('nope') }")

        full = await client.run("module.exports = 7", terminal_only=False)
        assert full.value_json == "7" and full.worker_id == "thread-1"

        caps = await client.capabilities()
        assert caps.isolate_reuse is (mode == "reused")


async def test_contexts_are_fresh_or_shared_as_the_mode_says(installed: None) -> None:
    """A global set by one task is seen by the next one only in the reused mode."""
    leak = "module.exports = () => { globalThis.n = (globalThis.n || 0) + 1; return globalThis.n }"
    seen = {}
    for mode in ("fresh", "reused"):
        async with (
            ServerProcess(peer_argv(mode), f"peer ({mode})") as server,
            AsyncClient(server.target, retry=None, timeout=30) as client,
        ):
            seen[mode] = [(await client.run(leak)).value_json for _ in range(3)]
    assert seen == {"fresh": ["1", "1", "1"], "reused": ["1", "2", "3"]}
