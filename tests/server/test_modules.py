# ruff: noqa: E501  (tables of JavaScript sources read best one case a line)
"""Modules as Node resolves them, through a real server, compared with Node on the same files.

Real npm trees are installed once into a shared cache (tests/npmtrees.py) and sent as the
task's modules exactly as `npm install` left them; `node` runs the same entry over the
same files, and the two answers must be equal. Small generated trees pin each resolution
rule (exports conditions, patterns, imports, self-reference, type: module) the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import npmtrees

needs_node = pytest.mark.skipif(not npmtrees.node_available(), reason="node/npm not installed")


@pytest.fixture
async def run(zako_server):
    async with grpc.aio.insecure_channel(
        zako_server.target, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def run(modules: dict[str, str], entry: str, input: object = None) -> pb.RunResponse:
            task = pb.Task(
                source=modules[entry],
                entry_name=entry,
                modules=[pb.Module(name=k, source=v) for k, v in modules.items() if k != entry],
                input_json=json.dumps(input),
                timeout=Duration(seconds=30),
                # Every run reaches the transform stage and a worker (no action cache).
                cache=pb.CACHE_POLICY_SKIP,
            )
            return await stub.Run(pb.RunRequest(task=task), timeout=120)

        yield run


def value(response: pb.RunResponse) -> object:
    assert response.WhichOneof("outcome") == "completed", response.failed
    return json.loads(response.completed.result.value_json)


def error(response: pb.RunResponse) -> pb.Failed:
    assert response.WhichOneof("outcome") == "failed", response
    return response.failed


async def same_as_node(run, modules: dict[str, str], entry: str, input: object = None) -> object:
    node = npmtrees.run_node(modules, entry, input)
    assert node.ok, f"node failed: {node}"
    got = value(await run(modules, entry, input))
    assert got == node.value
    return got


# ---- real npm packages --------------------------------------------------------------------

PACKAGES = [
    # CommonJS
    (
        "semver@7.6.3",
        "main.js",
        "const s = require('semver');\n"
        "module.exports = () => [s.valid('1.2.3'), s.satisfies('1.2.3', '^1.0.0'), s.inc('1.2.3', 'minor')];",
    ),
    (
        "lodash@4.17.21",
        "main.js",
        "const _ = require('lodash');\n"
        "module.exports = () => [_.chunk([1, 2, 3, 4, 5], 2), _.camelCase('Foo Bar'), require('lodash/fp/map').length];",
    ),
    # JSON data: mime-db's main is index.js, which requires db.json
    (
        "mime-db@1.54.0",
        "main.js",
        "const db = require('mime-db');\n"
        "module.exports = () => [db['application/json'].extensions, Object.keys(db).length > 1000];",
    ),
    # ESM-only
    (
        "marked@15.0.12",
        "main.mjs",
        "import { marked } from 'marked';\n"
        "const n = await Promise.resolve(2);\nexport default () => [n, marked.parse('# hi *x*')];",
    ),
    (
        "nanoid@5.1.5",
        "main.mjs",
        "import { customAlphabet } from 'nanoid';\nexport default () => typeof customAlphabet;",
    ),
    (
        "p-limit@6.2.0",
        "main.mjs",
        "import pLimit from 'p-limit';\n"
        "export default async () => { const l = pLimit(1); return Promise.all([l(async () => 1), l(async () => 2)]); };",
    ),
    # ESM-only, required from CommonJS (Node 22's require() of ES modules)
    (
        "marked@15.0.12",
        "main.js",
        "const { marked } = require('marked');\nmodule.exports = () => marked.parse('_i_');",
    ),
    # dual packages with exports conditions (import and require)
    (
        "uuid@11.1.0",
        "main.js",
        "const { validate, v5 } = require('uuid');\n"
        "module.exports = () => [validate('x'), v5('a', v5.DNS)];",
    ),
    (
        "uuid@11.1.0",
        "main.mjs",
        "import { v5, NIL } from 'uuid';\nexport default () => [NIL, v5('b', v5.URL)];",
    ),
    (
        "json5@2.2.3",
        "main.mjs",
        "import JSON5 from 'json5';\nexport default () => JSON5.parse('{a: 1, // x\\n b: [2,]}');",
    ),
    # a TypeScript entry importing a CommonJS package
    (
        "js-yaml@4.1.0",
        "main.ts",
        "import yaml from 'js-yaml';\ninterface Doc { a: number[] }\n"
        "export default (): Doc => yaml.load('a: [1, 2]') as Doc;",
    ),
]


@needs_node
@pytest.mark.parametrize(
    ("spec", "entry", "text"), PACKAGES, ids=[f"{p[0]}:{p[1]}" for p in PACKAGES]
)
async def test_real_package_trees_answer_as_node_does(run, spec, entry, text):
    modules = npmtrees.install_and_pack(spec)
    modules[entry] = text
    if entry.endswith(".ts"):
        # Node 20 cannot run TypeScript: it runs the same program with the types left out.
        plain = dict(modules)
        del plain[entry]
        plain["main.mjs"] = (
            "import yaml from 'js-yaml';\nexport default () => yaml.load('a: [1, 2]');"
        )
        assert value(await run(modules, entry)) == npmtrees.run_node(plain, "main.mjs").value
    else:
        await same_as_node(run, modules, entry)


@needs_node
async def test_a_missing_module_in_a_big_tree_gets_a_short_message(run):
    modules = npmtrees.install_and_pack("lodash@4.17.21")
    modules["main.js"] = "require('lodash/chunkk');"
    result = error(await run(modules, "main.js"))
    assert result.reason == pb.FAILURE_REASON_MODULE_NOT_FOUND
    message = result.error.message
    assert "Cannot find module 'lodash/chunkk'" in message and len(message) < 400
    assert "node_modules/lodash/chunk.js" in message  # the nearest candidate


# ---- resolution rules, against Node on the same generated trees ---------------------------

DUAL = {
    "node_modules/dual/package.json": json.dumps(
        {
            "name": "dual",
            "exports": {
                ".": {"import": "./esm/index.mjs", "require": "./cjs/index.js"},
                "./feature": {
                    "browser": "./f-browser.js",
                    "node": "./f-node.js",
                    "default": "./f.js",
                },
                "./lib/*.js": "./src/*.js",
                "./private/*": None,
                "./package.json": "./package.json",
            },
            "imports": {"#dep": "./cjs/dep.js"},
        }
    ),
    "node_modules/dual/esm/index.mjs": "export default 'esm'; export const kind = 'import';",
    "node_modules/dual/cjs/index.js": "module.exports = { kind: require('#dep') };",
    "node_modules/dual/cjs/dep.js": "module.exports = 'require';",
    "node_modules/dual/f-browser.js": "module.exports = 'browser';",
    "node_modules/dual/f-node.js": "module.exports = 'node';",
    "node_modules/dual/f.js": "module.exports = 'default';",
    "node_modules/dual/src/a.js": "module.exports = 'pattern a';",
    "node_modules/dual/private/x.js": "module.exports = 'hidden';",
}


@needs_node
async def test_exports_conditions_patterns_and_imports_as_node(run):
    modules = dict(DUAL)
    modules["main.js"] = (
        "const t = (f) => { try { return f(); } catch (e) { return e.code; } };\n"
        "module.exports = async () => [require('dual'), require('dual/feature'),\n"
        "  require('dual/lib/a.js'), t(() => require('dual/private/x.js')),\n"
        "  t(() => require('dual/f.js')), require('dual/package.json').name,\n"
        "  (await import('dual')).default];"
    )
    await same_as_node(run, modules, "main.js")
    modules["main.mjs"] = (
        "import d, { kind } from 'dual';\nimport * as ns from 'dual';\n"
        "export default () => [d, kind, Object.keys(ns).sort()];"
    )
    await same_as_node(run, modules, "main.mjs")


@needs_node
async def test_node_modules_walk_up_main_index_and_self_reference(run):
    modules = {
        "node_modules/a/package.json": '{"name": "a", "main": "lib/entry"}',
        "node_modules/a/lib/entry.js": "module.exports = 'a:' + require('b');",
        "node_modules/b/index.js": "module.exports = 'root b';",
        "node_modules/a/node_modules/b/index.json": '"nested b"',
        "pkg/package.json": '{"name": "self", "exports": {".": "./x.js", "./y": "./y.js"}}',
        "pkg/x.js": "module.exports = require('self/y');",
        "pkg/y.js": "module.exports = 'self y';",
        "lib/index.js": "module.exports = require('..') === undefined ? 0 : 'dot-dot';",
        "index.js": "module.exports = 1;",
        "main.js": (
            "module.exports = () => [require('a'), require('b'), require('./pkg/x'),\n"
            "  require('./lib'), require('.'), require.resolve('a').replace(__dirname, '')];"
        ),
    }
    node = npmtrees.run_node(modules, "main.js")
    got = value(await run(modules, "main.js"))
    # Node's require.resolve answers absolute paths; Zako's are the tree's names.
    assert got[:5] == node.value[:5]
    assert got[5] == "node_modules/a/lib/entry.js"


@needs_node
async def test_type_module_mjs_cjs_and_interop(run):
    modules = {
        "package.json": '{"type": "module"}',
        "main.js": (
            "import cjs, { n } from './c.cjs';\n"
            "import data from './d.json' with { type: 'json' };\n"
            "const fromCjs = (await import('./e.cjs')).default;\n"
            "export default () => [cjs, n, data, fromCjs, typeof import.meta.url];"
        ),
        "c.cjs": "exports.n = 1; exports.m = [2];",
        "d.json": '{"k": [true, null]}',
        "e.cjs": "const e = require('./e2.mjs'); module.exports = [e.default, e.x];",
        "e2.mjs": "export default 5; export let x = 6;",
    }
    await same_as_node(run, modules, "main.js")


# ---- laziness, names, JSON, hashbang, require's own API -----------------------------------


async def test_files_nobody_loads_can_be_anything(run):
    modules = {
        "main.js": "#!/usr/bin/env node\nmodule.exports = () => require('./lib/ok');",
        "lib/ok.js": "module.exports = 'ok';",
        "bin/cli.js": "#!/usr/bin/env node\nimport x from 'y'; this is not JavaScript {{{",
        "README.md": "# not JavaScript",
        "unused.json": "{not json",
        "broken.mjs": "export const = ;",
        "broken.ts": "let x: = 1",
    }
    assert value(await run(modules, "main.js")) == "ok"


async def test_any_character_npm_allows_in_names(run):
    modules = {
        "main.js": (
            "module.exports = () => [require('./a+b~c'), require('./x:y/é z.js'),\n"
            "  require('./@scope/n.json'), require('./__proto__.js')];"
        ),
        "a+b~c.js": "module.exports = 1;",
        "x:y/é z.js": "module.exports = 2;",
        "@scope/n.json": "[3]",
        "__proto__.js": "module.exports = 4;",
    }
    assert value(await run(modules, "main.js")) == [1, 2, [3], 4]


async def test_json_modules_hashbang_and_require_api(run):
    modules = {
        "main.js": (
            "#!/usr/bin/env node\n"
            "const a = require('./data/list');\n"
            "module.exports = () => [a, require.resolve('./data/list'), module.paths,\n"
            "  __filename, __dirname, require('./data/list.json') === a,\n"
            "  Object.keys(require.cache).sort(), module.id];"
        ),
        "data/list.json": "[1, 2, 3]",
    }
    assert value(await run(modules, "main.js")) == [
        [1, 2, 3],
        "data/list.json",
        ["node_modules"],
        "main.js",
        "",
        True,
        ["data/list.json", "main.js"],
        "main.js",
    ]


async def test_require_cache_is_per_task(run):
    modules = {
        "main.js": "const c = require('./c'); c.n++; module.exports = () => c.n;",
        "c.js": "module.exports = { n: 0 };",
    }
    assert value(await run(modules, "main.js")) == 1
    assert value(await run(modules, "main.js")) == 1


# ---- ES modules and TypeScript -------------------------------------------------------------


async def test_es_entry_default_export_live_bindings_and_top_level_await(run):
    modules = {
        "main.mjs": (
            "import { count, inc } from './counter.mjs';\nimport * as ns from './counter.mjs';\n"
            "export * from './counter.mjs';\n"
            "await null;\ninc();\nexport default (input) => [count, ns.count, input];"
        ),
        "counter.mjs": "export let count = 0;\nexport function inc() { count += 1; }",
    }
    assert value(await run(modules, "main.mjs", "x")) == [1, 1, "x"]


async def test_typescript_tsx_and_enums(run):
    modules = {
        "main.ts": (
            "import { render } from './view';\nimport type { Props } from './types';\n"
            "enum Color { Red, Green = 'g' }\n"
            "export default (input: Props): unknown => [render(input), Color.Red, Color.Green];"
        ),
        "types.ts": "export interface Props { name: string }",
        "view.tsx": (
            "const React = { createElement: (tag: string, props: object | null, ...children: unknown[]) =>\n"
            "  ({ tag, children }) };\n"
            "export const render = (p: { name: string }) => <b>{p.name}</b>;"
        ),
    }
    result = await run(modules, "main.ts", {"name": "n"})
    assert value(result) == [{"tag": "b", "children": ["n"]}, 0, "g"]


@pytest.mark.parametrize(
    ("modules", "entry", "where"),
    [
        # a runtime error: the frame is mapped back through the transform's column map
        (
            {
                "main.ts": "export default (): number => 1;\nconst f = (a: number, b: string): never => {\n"
                "  const t: Record<string, number> = {}; throw new Error('x' + a + b);\n};\nf(1, 'b');"
            },
            "main.ts",
            ("main.ts", 3, 47),
        ),
        (
            {
                "main.mjs": "import x from './x.mjs';\nexport default () => x;\nnull.f;",
                "x.mjs": "export default 1;",
            },
            "main.mjs",
            ("main.mjs", 3, 6),
        ),
        (
            {
                "main.jsx": "const React = { createElement: () => null };\n"
                "export default () => <div a={1}>{missing.y}</div>;"
            },
            "main.jsx",
            ("main.jsx", 2, 34),
        ),
        # syntax errors, found by the transform stage, in the original's positions
        ({"main.ts": "let a: number = 1;\nlet b: = 2;"}, "main.ts", ("main.ts", 2, 8)),
        (
            {
                "main.js": "require('./bad.mjs');",
                "bad.mjs": "export const a = 1;\n  export let = 2;",
            },
            "main.js",
            ("bad.mjs", 2, 14),
        ),
        # a namespace holding values would be erased by the transform: an error instead
        (
            {"main.ts": "export default 1;\nnamespace N { export const z = 3; }"},
            "main.ts",
            ("main.ts", 2, 1),
        ),
        # a CommonJS module compiled on first require: located by a diagnosis parse
        (
            {"main.js": "require('./bad.js');", "bad.js": "let a = 1;\n  a b;\n"},
            "main.js",
            ("bad.js", 2, 5),
        ),
    ],
)
async def test_errors_name_the_original_line_and_column(run, modules, entry, where):
    result = error(await run(modules, entry))
    assert (result.error.module, result.error.line, result.error.column) == where, result.error
    module, line, column = where
    assert (
        f"{module}:{line}:{column}" in result.error.stack
        or result.error.stack == ""
        or (result.reason == pb.FAILURE_REASON_SYNTAX_ERROR)
    )


async def test_the_transform_stage_reports_its_figures_and_caches_across_tasks(zako_server, run):
    modules = {"main.ts": "const n: number = 41;\nexport default (): number => n + 1;"}
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        before = (await stub.Stats(pb.StatsRequest())).transforms
        assert value(await run(modules, "main.ts")) == 42
        middle = (await stub.Stats(pb.StatsRequest())).transforms
        assert value(await run(modules, "main.ts")) == 42
        after = (await stub.Stats(pb.StatsRequest())).transforms
    assert before.processes >= 1
    # the second run is a cache hit: nothing more is transformed
    assert after.files_transformed == middle.files_transformed
    assert after.cache_hits == middle.cache_hits + 1
    assert after.queued == 0 and after.busy == 0


# ---- limits ---------------------------------------------------------------------------------


async def test_tree_limits_are_bytes_and_name_the_limit_and_the_size(server_factory):
    server = server_factory(max_tree_bytes=10_000, max_source_bytes=6_000)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def status(modules: dict[str, str]) -> str:
            task = pb.Task(
                source="module.exports = 1;",
                modules=[pb.Module(name=k, source=v) for k, v in modules.items()],
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Run(pb.RunRequest(task=task), timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return info.value.details()

        many = {f"lib/f{i}.js": "x" * 2_000 for i in range(6)}
        message = await status(many)
        assert "max_tree_bytes" in message and "10000" in message and "lib/f4.js" in message
        message = await status({"big.js": "x" * 7_000})
        assert "big.js" in message and "7000 bytes" in message and "max_source_bytes" in message
        message = await status({"a//b.js": ""})
        assert "a//b.js" in message
    # many small files are fine: there is no count of 1,024
    server = server_factory()
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        small = {f"m/{i}.js": "module.exports = 1;" for i in range(1_500)}
        task = pb.Task(
            source="module.exports = require('./m/1499');",
            modules=[pb.Module(name=k, source=v) for k, v in small.items()],
        )
        response = await stub.Run(pb.RunRequest(task=task), timeout=60)
        assert response.completed.result.value_json == "1"


@needs_node
async def test_commonjs_named_exports_are_the_ones_node_detects(run):
    modules = {
        "main.mjs": (
            "import * as a from './a.cjs';\nimport * as b from './b.cjs';\nimport * as c from './c.cjs';\n"
            "export default () => [a, b, c].map((ns) => Object.keys(ns).sort());"
        ),
        "a.cjs": "exports.x = 1; module.exports.y = 2; Object.defineProperty(exports, 'z', { value: 3, enumerable: true });",
        "b.cjs": "module.exports = { n: 1, m: [2] };  // values Node's lexer cannot see",
        "c.cjs": "module.exports = { ...require('./a.cjs'), w: 4 }; const w = 4; module.exports = { w, ...require('./a.cjs') };",
    }
    await same_as_node(run, modules, "main.mjs")
