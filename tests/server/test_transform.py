"""The transform stage's pool: real transform processes, its digest cache and its figures."""

from __future__ import annotations

import asyncio

import pytest

from zako_server.server.transforms import TransformPool, default_processes, package_types


@pytest.fixture
async def pool():
    pool = TransformPool(1, cache_bytes=1 << 20)
    await pool.start()
    yield pool
    await pool.close()


def test_a_few_processes_not_a_share_of_the_machine():
    assert [default_processes(n) for n in (1, 2, 4, 8, 16, 32, 64, 256)] == [1, 1, 1, 2, 3, 4, 4, 4]


def test_package_type_is_the_nearest_manifest():
    types = package_types(
        {
            "package.json": '{"type": "module"}',
            "node_modules/a/package.json": '{"name": "a"}',
            "node_modules/b/package.json": "{not json",
            "lib/package.json": '{"type": "commonjs"}',
        }
    )
    assert types == {"": "module", "node_modules/a": "", "lib": "commonjs"}


async def test_plain_commonjs_comes_back_with_the_names_node_detects(pool):
    answers = await pool.prepare({"a.js": "module.exports = 1;", "b.cjs": "exports.x = 2;"})
    assert pool.stats.files_transformed == 2
    # the texts are compiled as they are; only export names (as Node finds them) come
    assert answers == {
        "a.js": {"esm": False, "cjs": {"exports": [], "reexports": []}},
        "b.cjs": {"esm": False, "cjs": {"exports": ["x"], "reexports": []}},
    }


async def test_dynamic_import_and_import_meta_are_renamed_in_place(pool):
    source = "module.exports = () => import('./x.mjs');"
    answers = await pool.prepare({"a.js": source})
    code = answers["a.js"]["code"]
    assert answers["a.js"]["esm"] is False
    assert code == source.replace("import(", "__zimp(") and len(code) == len(source)


async def test_es_modules_follow_the_package_type_and_the_extension(pool):
    modules = {
        "package.json": '{"type": "module"}',
        "a.js": "export const a = 1;",
        "b.cjs": "module.exports = 2;",
        "c.mjs": "export default 3;",
        "lib/package.json": '{"type": "commonjs"}',
        "lib/d.js": "module.exports = 4;",
    }
    answers = await pool.prepare(modules)
    assert answers["a.js"]["esm"] is True and answers["c.mjs"]["esm"] is True
    assert answers["b.cjs"]["esm"] is False and answers["lib/d.js"]["esm"] is False
    assert "code" not in answers["b.cjs"]  # compiled from its own text
    assert "exports.a = a" in answers["a.js"]["code"]


async def test_typescript_keeps_lines_and_has_a_source_map(pool):
    source = "const a: number = 1;\nexport const b = (x: string): string => x + a;\n"
    answer = (await pool.prepare({"m.ts": source}))["m.ts"]
    assert answer["esm"] is True
    assert answer["code"].count("\n") == source.count("\n")
    assert ": number" not in answer["code"]
    # sucrase's `mappings` (VLQ); test_modules checks columns mapped back end to end
    assert isinstance(answer["map"], str) and ";" in answer["map"]


async def test_a_file_that_does_not_parse_answers_its_error_with_the_original_position(pool):
    answer = (await pool.prepare({"bad.ts": "let a = 1;\nlet b: = 2;"}))["bad.ts"]
    assert answer["error"]["name"] == "SyntaxError"
    assert (answer["error"]["line"], answer["error"]["column"]) == (2, 8)
    assert "bad.ts" not in answer["error"]["message"]  # cached by content, not by name


async def test_the_cache_transforms_a_text_once_whatever_its_name(pool):
    source = "export default 42;"
    await pool.prepare({"a.mjs": source})
    await pool.prepare({"other/b.mjs": source, "c.mjs": source})
    assert pool.stats.files_transformed == 1
    assert pool.stats.cache_misses == 1 and pool.stats.cache_hits == 2
    assert pool.stats.busy == 0 and pool.stats.queued == 0


async def test_the_cache_is_bounded_by_bytes():
    pool = TransformPool(1, cache_bytes=4096)
    try:
        for i in range(40):
            await pool.prepare({"m.mjs": f"export const v{i} = {i};" + " " * 200})
        assert pool.stats.cache_bytes <= 4096
        assert 1 <= pool.stats.cache_entries < 40
    finally:
        await pool.close()


async def test_a_cancelled_caller_does_not_fail_others_waiting_for_the_same_files(pool):
    modules = {f"m{i}.mjs": f"export const v = {i};" for i in range(200)}
    first = asyncio.ensure_future(pool.prepare(modules))
    second = asyncio.ensure_future(pool.prepare(modules))
    await asyncio.sleep(0)
    first.cancel()
    answers = await second
    assert len(answers) == 200 and all(a["esm"] for a in answers.values())


async def test_without_make_setup_the_stage_is_off_and_commonjs_still_runs(monkeypatch, tmp_path):
    from zako_server.transform import bundle

    monkeypatch.setattr(bundle, "node_modules", lambda: tmp_path / "missing")
    pool = TransformPool(1)
    await pool.start()
    try:
        assert pool.unavailable is not None and "missing" in pool.unavailable
        assert await pool.prepare({"a.mjs": "export default 1;"}) == {}
    finally:
        await pool.close()
