"""Module trees by digest through a real server (issue #15): what travels, how often, and
what happens when the server evicted what the client thought it had."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from zako_sdk import AsyncClient, Client, ModuleTree
from zako_sdk._base import request_bytes
from zako_sdk._cli_args import EXIT_OK
from zako_sdk.cli import main

# The entry reads every file of the tree, so a missing or wrong blob cannot go unseen.
ENTRY = """
module.exports = (n) => {
  const names = require('./names.json');
  return names.map((name) => require('./' + name)).join('|') + '|' + n;
};
"""


def project(tag: str, files: int = 8, size: int = 30_000) -> dict[str, str]:
    names = [f"lib/m{i}.js" for i in range(files)]
    tree = {name: f"module.exports = '{tag}{i}'; // {'x' * size}" for i, name in enumerate(names)}
    tree["names.json"] = repr(names).replace("'", '"')
    return tree


def expected(tag: str, files: int, n: int) -> str:
    return "|".join(f"{tag}{i}" for i in range(files)) + f"|{n}"


def blobs_of(client: AsyncClient) -> object:
    return client._uploads.of(client._cluster.replicas[0])


async def test_a_repeated_run_uploads_the_tree_once_and_then_sends_only_its_task(zako_server):
    tree = ModuleTree(project("once"))
    async with AsyncClient(zako_server.target) as client:
        before = (await client.stats()).cas
        first = await client.submit(ENTRY, input=0, modules=tree, cache="skip")
        assert (await first).value == expected("once", 8, 0)
        after_first = (await client.stats()).cas
        blobs = blobs_of(client)
        uploaded = blobs.uploaded_blobs  # type: ignore[attr-defined]
        assert uploaded == len(tree) + 1  # every file and the tree blob, once
        assert after_first.uploads - before.uploads == uploaded
        for n in range(1, 6):
            handle = await client.submit(ENTRY, input=n, modules=tree, cache="skip")
            assert (await handle).value == expected("once", 8, n)
            # The request carries the entry, the input and one digest: not the tree.
            assert request_bytes(handle._task) < 1_000 < tree.size_bytes // 100
        assert blobs.uploaded_blobs == uploaded  # type: ignore[attr-defined]
        assert blobs.find_calls == 1  # type: ignore[attr-defined]
        final = (await client.stats()).cas
        assert final.uploads == after_first.uploads
        assert final.missing_rejections == before.missing_rejections  # the server is shared


async def test_concurrent_runs_with_one_new_tree_upload_it_once(zako_server):
    tree = ModuleTree(project("together", files=20, size=5_000))
    async with AsyncClient(zako_server.target) as client:
        results = await asyncio.gather(
            *(client.run(ENTRY, input=n, modules=tree, cache="skip") for n in range(24))
        )
        assert [r.value for r in results] == [expected("together", 20, n) for n in range(24)]
        blobs = blobs_of(client)
        assert blobs.uploaded_blobs == len(tree) + 1  # type: ignore[attr-defined]
        assert blobs.find_calls == 1  # type: ignore[attr-defined]


def test_a_dict_and_a_directory_share_the_uploaded_tree(zako_server, tmp_path: Path):
    files = project("shared", files=3, size=100)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with Client(zako_server.target) as client:
        assert client.run(ENTRY, input=1, modules=files).value == expected("shared", 3, 1)
        uploads = client.stats().cas.uploads
        assert client.run(ENTRY, input=2, modules=tmp_path).value == expected("shared", 3, 2)
        assert client.stats().cas.uploads == uploads  # same digests: nothing new to send


def test_unary_runs_use_the_tree_too(zako_server):
    tree = ModuleTree(project("unary", files=2, size=100))
    with Client(zako_server.target) as client:
        for n in range(3):
            assert client.run_unary(ENTRY, input=n, modules=tree).value == expected("unary", 2, n)


async def test_a_tree_evicted_since_its_upload_is_sent_again_and_the_task_runs(server_factory):
    # A store of 1 MiB: two trees of ~0.5 MiB do not fit together, so uploading the
    # second evicts the first, which the client still believes the server holds.
    server = server_factory(cas_bytes="1MiB", max_blob_bytes="256KiB")
    first, second = ModuleTree(project("a", 6, 100_000)), ModuleTree(project("b", 6, 100_000))
    async with AsyncClient(server.target) as client:
        assert (await client.run(ENTRY, input=1, modules=first)).value == expected("a", 6, 1)
        assert (await client.run(ENTRY, input=2, modules=second)).value == expected("b", 6, 2)
        assert (await client.stats()).cas.evictions > 0
        handle = await client.submit(ENTRY, input=3, modules=first)
        assert (await handle).value == expected("a", 6, 3)
        stats = (await client.stats()).cas
        # The server refused the task for the evicted blobs; the SDK sent them and
        # resubmitted the same task (same id), which then ran.
        assert stats.missing_rejections >= 1 and handle.attempts >= 2
        assert blobs_of(client).find_calls >= 3  # type: ignore[attr-defined]
        assert stats.bytes <= stats.capacity_bytes
        # The two trees cannot both be whole in the store: the second lost blobs in turn.
        # After a rejection the client trusts none of its memory of that replica, so it
        # asks again and sends them before the task (no second rejection).
        unary = await client.run_unary(ENTRY, input=4, modules=second)
        assert unary.value == expected("b", 6, 4)
        assert (await client.stats()).cas.uploads > stats.uploads


def test_a_unary_run_refused_for_evicted_blobs_uploads_them_and_runs(server_factory):
    server = server_factory(cas_bytes="1MiB", max_blob_bytes="256KiB")
    first, second = ModuleTree(project("c", 6, 100_000)), ModuleTree(project("d", 6, 100_000))
    with Client(server.target) as client, Client(server.target) as other:
        assert client.run_unary(ENTRY, input=1, modules=first).value == expected("c", 6, 1)
        # Another client's upload evicts the first tree behind this client's back.
        assert other.run_unary(ENTRY, input=2, modules=second).value == expected("d", 6, 2)
        before = client.stats().cas.missing_rejections
        # FAILED_PRECONDITION with a PreconditionFailure naming the blobs: sent, rerun.
        assert client.run_unary(ENTRY, input=3, modules=first).value == expected("c", 6, 3)
        assert client.stats().cas.missing_rejections == before + 1


async def test_a_file_larger_than_a_message_goes_in_chunks(server_factory):
    server = server_factory(max_message_bytes="1MiB", max_blob_bytes="4MiB")
    big = "module.exports = '" + "z" * (3 << 20) + "';"
    async with AsyncClient(server.target) as client:
        result = await client.run(
            "module.exports = () => require('./big').length", modules={"big.js": big}
        )
        assert result.value == 3 << 20
        assert (await client.stats()).cas.uploaded_bytes >= len(big)


async def test_a_file_over_the_blob_limit_is_refused_before_the_task_is_sent(server_factory):
    from zako_sdk import InvalidTask

    server = server_factory(max_blob_bytes="64KiB", cas_bytes="4MiB")
    async with AsyncClient(server.target) as client:
        with pytest.raises(InvalidTask, match="max_blob_bytes") as info:
            await client.run("module.exports = 1", modules={"big.js": "x" * (100 << 10)})
        assert info.value.field == "task.tree"
        assert (await client.stats()).tasks.accepted == 0


def test_cli_modules_and_cache_flags(zako_server, tmp_path: Path, capsys):
    files = project("cli", files=2, size=10)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "main.js").write_text(ENTRY)
    argv = ["run", str(tmp_path / "main.js"), "--modules", str(tmp_path), "--input", "5"]
    argv += ["--target", zako_server.target, "--full"]
    assert main([*argv, "--cache", "skip"]) == EXIT_OK
    import json

    document = json.loads(capsys.readouterr().out)
    assert document["value"] == expected("cli", 2, 5) and document["cached"] is False


async def test_a_dns_name_gets_routed_tasks_and_their_blobs_on_one_address(server_factory):
    from zako_sdk import TaskSpec
    from zako_sdk._base import prepare
    from zako_sdk._routing import action_key, rendezvous_order

    by_name, plain = server_factory(), server_factory()
    pinned = f"ipv4:127.0.0.1:{by_name.server.port}"  # what dns:///127.0.0.1:port resolves to
    targets = [f"dns:///127.0.0.1:{by_name.server.port}", plain.target]
    tree = ModuleTree(project("dns", files=2, size=100))

    def first_choice(n: int) -> str:
        task = prepare(TaskSpec(ENTRY, input=n, modules=tree), default_timeout=None).task
        names = [pinned, plain.target]
        return names[rendezvous_order(action_key(task), names)[0]]

    n = next(n for n in range(100) if first_choice(n) == pinned)
    async with AsyncClient(targets) as client:
        handles = [await client.submit(ENTRY, input=n, modules=tree) for _ in range(3)]
        results = [await h for h in handles]
        assert [h.replica for h in handles] == [pinned] * 3  # one backend, not gRPC's pick
        assert [r.cached for r in results] == [False, True, True]
        cluster = await client.stats_all()
    stats = cluster.replicas[pinned]
    assert stats.cas.uploads == len(tree) + 1  # its files and the tree, by digest, not inline
    # Submitted together, the repeats met the first in flight there and took its outcome.
    assert stats.action_cache.hits + stats.action_cache.joins == 2


async def test_a_batch_hashes_each_tree_once_and_uploads_it_once(zako_server, tmp_path: Path):
    from zako_sdk import TaskSpec
    from zako_sdk._hashing import shared_trees

    files = project("batch", files=4, size=1_000)
    specs = [TaskSpec(ENTRY, input=n, modules=files, cache="skip") for n in range(20)]
    shared = shared_trees(specs)
    assert len({id(spec.modules) for spec in shared}) == 1  # one ModuleTree for all
    assert isinstance(shared[0].modules, ModuleTree)
    async with AsyncClient(zako_server.target) as client:
        results = await client.batch(specs)
        assert [r.value for r in results] == [expected("batch", 4, n) for n in range(20)]
        assert blobs_of(client).find_calls == 1  # type: ignore[attr-defined]


async def test_a_failure_can_come_from_the_action_cache(zako_server):
    import os

    from zako_sdk import TaskFailed

    source = "module.exports = (n) => { throw new RangeError('no ' + n); };"
    unique = os.urandom(8).hex()  # the session's server may have seen any other input
    async with AsyncClient(zako_server.target) as client:
        with pytest.raises(TaskFailed) as first:
            await client.run(source, input=unique)
        with pytest.raises(TaskFailed) as second:
            await client.run_unary(source, input=unique)
        with pytest.raises(TaskFailed) as refreshed:
            await client.run(source, input=unique, cache="refresh")
    assert first.value.cached is False and second.value.cached is True
    assert refreshed.value.cached is False
    assert second.value.js_error.message == first.value.js_error.message == f"no {unique}"
