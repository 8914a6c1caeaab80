# ruff: noqa: E501  (a table of packages and their JavaScript reads best one case a line)
"""The packages table (README, Modules and npm packages): real npm packages, each sent as its installed
tree through a real server and run by Node over the same files; each must match Node or
fail for the reason written next to it.

`python tests/server/test_modules_packages.py` prints the table's rows from a fresh run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import npmtrees

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

# (package@version, entry, entry text, None when it must match Node, else the failure's
# reason and a phrase of its message)
PACKAGES: list[tuple[str, str, str, tuple[str, str] | None]] = [
    (
        "semver@7.6.3",
        "main.js",
        "const s = require('semver'); module.exports = () => [s.valid('1.2.3'), s.satisfies('1.2.3', '^1.0.0'), s.inc('1.2.3', 'minor')];",
        None,
    ),
    (
        "semver@7.6.3",
        "main.mjs",
        "import semver, { valid } from 'semver'; export default () => [semver.valid('1.2.3'), valid('x')];",
        None,
    ),
    (
        "lodash@4.17.21",
        "main.js",
        "const _ = require('lodash'); module.exports = () => [_.chunk([1, 2, 3, 4, 5], 2), _.camelCase('Foo Bar'), require('lodash/fp/map').length];",
        None,
    ),
    (
        "uuid@11.1.0",
        "main.js",
        "const { validate, v5 } = require('uuid'); module.exports = () => [validate('x'), v5('a', v5.DNS)];",
        None,
    ),
    (
        "js-yaml@4.1.0",
        "main.js",
        "const y = require('js-yaml'); module.exports = () => y.load('a: [1, 2]\\nb: {c: x}');",
        None,
    ),
    (
        "mime-db@1.54.0",
        "main.js",
        "const db = require('mime-db'); module.exports = () => [db['application/json'].extensions, Object.keys(db).length > 1000];",
        None,
    ),
    (
        "zod@3.24.2",
        "main.mjs",
        "import { z } from 'zod'; export default () => [z.string().safeParse(1).success, z.object({ a: z.number() }).parse({ a: 1 })];",
        None,
    ),
    (
        "marked@15.0.12",
        "main.mjs",
        "import { marked } from 'marked'; const x = await Promise.resolve(2); export default () => [x, marked.parse('**b**'), import.meta.url.startsWith('file:')];",
        None,
    ),
    (
        "marked@15.0.12",
        "main.js",
        "const { marked } = require('marked'); module.exports = () => marked.parse('_i_');",
        None,
    ),
    (
        "nanoid@5.1.5",
        "main.mjs",
        "import { customAlphabet } from 'nanoid'; export default () => typeof customAlphabet;",
        None,
    ),
    (
        "p-limit@6.2.0",
        "main.mjs",
        "import pLimit from 'p-limit'; export default async () => { const l = pLimit(1); return Promise.all([l(async () => 1), l(async () => 2)]); };",
        None,
    ),
    (
        "yargs-parser@22.0.0",
        "main.mjs",
        "import parse from 'yargs-parser'; export default () => parse(['--a', '1', '-b', 'x']);",
        None,
    ),
    (
        "@babel/parser@7.27.0",
        "main.js",
        "const p = require('@babel/parser'); module.exports = () => p.parse('let a = 1').program.body[0].type;",
        None,
    ),
    (
        "json5@2.2.3",
        "main.mjs",
        "import JSON5 from 'json5'; export default () => JSON5.parse('{a: 1, // x\\n b: [2,]}');",
        None,
    ),
    (
        "smol-toml@1.3.4",
        "main.mjs",
        "import { parse } from 'smol-toml'; export default () => parse('a = 1\\n[b]\\nc = \"x\"');",
        None,
    ),
    (
        "ini@5.0.0",
        "main.js",
        "const ini = require('ini'); module.exports = () => ini.parse('a=1\\n[s]\\nb=2');",
        None,
    ),
    (
        "picomatch@4.0.2",
        "main.js",
        "const pm = require('picomatch'); module.exports = () => [pm('*.js')('a.js'), pm.isMatch('a/b.ts', '**/*.ts')];",
        None,
    ),
    (
        "minimatch@10.0.1",
        "main.mjs",
        "import { minimatch } from 'minimatch'; export default () => [minimatch('a.js', '*.js'), minimatch('x/y.md', '**/*.js')];",
        None,
    ),
    (
        "acorn@8.14.1",
        "main.mjs",
        "import * as acorn from 'acorn'; export default () => acorn.parse('x = 1', { ecmaVersion: 2020 }).body[0].expression.operator;",
        None,
    ),
    (
        "diff@7.0.0",
        "main.js",
        "const d = require('diff'); module.exports = () => d.diffChars('abc', 'abd').map((p) => [p.value, !!p.added, !!p.removed]);",
        None,
    ),
    (
        "mustache@4.2.0",
        "main.mjs",
        "import M from 'mustache'; export default () => M.render('hi {{x}}', { x: 'y' });",
        None,
    ),
    (
        "handlebars@4.7.8",
        "main.js",
        "const H = require('handlebars'); module.exports = () => H.compile('hi {{x}}')({ x: 'z' });",
        None,
    ),
    (
        "ajv@8.17.1",
        "main.js",
        "const Ajv = require('ajv'); module.exports = () => { const a = new Ajv(); return [a.validate({ type: 'number' }, 1), a.validate({ type: 'number' }, 'x')]; };",
        None,
    ),
    (
        "chalk@5.4.1",
        "main.mjs",
        "import chalk from 'chalk'; export default () => [chalk.level, chalk.red('x')];",
        None,
    ),
    (
        "ms@2.1.3",
        "main.js",
        "const ms = require('ms'); module.exports = () => [ms('2 days'), ms(60000)];",
        None,
    ),
    (
        "yaml@2.8.0",
        "main.mjs",
        "import YAML from 'yaml'; export default () => [YAML.parse('a: [1, {b: 2}]'), YAML.stringify({ x: [1] })];",
        None,
    ),
    (
        "escape-string-regexp@5.0.0",
        "main.mjs",
        "import e from 'escape-string-regexp'; export default () => e('a.b*c');",
        None,
    ),
    (
        "date-fns@4.1.0",
        "main.mjs",
        "import { addDays, formatISO } from 'date-fns'; export default () => formatISO(addDays(new Date(0), 3), { representation: 'date' });",
        None,
    ),
    (
        "micromatch@4.0.8",
        "main.js",
        "const mm = require('micromatch'); module.exports = () => mm(['a.js', 'b.md'], '*.js');",
        None,
    ),
    (
        "change-case@5.4.4",
        "main.mjs",
        "import { camelCase, snakeCase } from 'change-case'; export default () => [camelCase('foo bar'), snakeCase('fooBar')];",
        None,
    ),
    (
        "commander@13.1.0",
        "main.js",
        "const { Command } = require('commander'); module.exports = () => { const p = new Command(); p.option('-x, --xx <v>'); p.parse(['node', 's', '-x', '3']); return p.opts(); };",
        None,
    ),
    (
        "dayjs@1.11.13",
        "main.js",
        "const d = require('dayjs'); module.exports = () => d('2020-01-02').add(1, 'day').format('YYYY-MM-DD');",
        None,
    ),
    (
        "immer@10.1.1",
        "main.mjs",
        "import { produce } from 'immer'; export default () => produce({ a: [1] }, (d) => { d.a.push(2); });",
        None,
    ),
    (
        "qs@6.14.0",
        "main.js",
        "const qs = require('qs'); module.exports = () => [qs.parse('a[b]=c&d=1'), qs.stringify({ x: [1, 2] })];",
        None,
    ),
    (
        "validator@13.15.0",
        "main.js",
        "const v = require('validator'); module.exports = () => [v.isEmail('a@b.co'), v.isUUID('x')];",
        None,
    ),
    (
        "mime@4.0.7",
        "main.mjs",
        "import mime from 'mime'; export default () => [mime.getType('a.json'), mime.getExtension('text/html')];",
        None,
    ),
    (
        "typescript@5.8.3",
        "main.js",
        "const ts = require('typescript'); module.exports = () => [ts.version, ts.transpileModule('enum E { A, B }\\ninterface I { a: string }\\nexport const f = (x: number): E => x as E;\\nexport default class C<T> { constructor(private t: T) {} }\\n', { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 } }).outputText];",
        None,
    ),
]


def kind(modules: dict[str, str], spec: str) -> str:
    """CJS, ESM or dual, from the package's own manifest."""
    manifest = json.loads(modules[f"node_modules/{spec.rsplit('@', 1)[0]}/package.json"])
    exports = json.dumps(manifest.get("exports", ""))
    if '"import"' in exports and '"require"' in exports:
        return "dual"
    if manifest.get("type") == "module":
        return "ESM"
    return "dual" if '"import"' in exports or '"module-sync"' in exports else "CJS"


async def outcome(
    stub: pb_grpc.ExecutorStub, modules: dict[str, str], entry: str
) -> tuple[str, object]:
    """("ok", value) or (reason, message) from a real server."""
    task = pb.Task(
        source=modules[entry],
        entry_name=entry,
        modules=[pb.Module(name=k, source=v) for k, v in modules.items() if k != entry],
        timeout=Duration(seconds=30),
    )
    try:
        response = await stub.Run(pb.RunRequest(task=task), timeout=120)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details()
    if response.WhichOneof("outcome") == "completed":
        return "ok", json.loads(response.completed.result.value_json)
    failed = response.failed
    return pb.FailureReason.Name(failed.reason), f"{failed.error.name}: {failed.error.message}"


@pytest.fixture
async def stub(zako_server):
    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(zako_server.target, options=options) as channel:
        yield pb_grpc.ExecutorStub(channel)


@pytest.mark.skipif(not npmtrees.node_available(), reason="node/npm not installed")
@pytest.mark.parametrize(
    ("spec", "entry", "text", "expected"), PACKAGES, ids=[f"{p[0]}:{p[1]}" for p in PACKAGES]
)
async def test_each_package_matches_node_or_fails_for_its_reason(stub, spec, entry, text, expected):
    modules = npmtrees.install_and_pack(spec)
    modules[entry] = text
    got, detail = await outcome(stub, modules, entry)
    if expected is None:
        node = npmtrees.run_node(modules, entry)
        assert node.ok, node
        assert (got, detail) == ("ok", node.value)
    else:
        assert got == expected[0] and expected[1] in str(detail), (got, detail)


async def _table() -> None:
    from bench.common import ServerProcess, zako_argv

    server = await ServerProcess(zako_argv(), "zako").start()
    try:
        async with grpc.aio.insecure_channel(
            server.target, options=[("grpc.max_send_message_length", 64 << 20)]
        ) as channel:
            stub = pb_grpc.ExecutorStub(channel)
            for spec, entry, text, _ in PACKAGES:
                modules = npmtrees.install_and_pack(spec)
                name, version = spec.rsplit("@", 1)
                flavour = kind(modules, spec)
                modules[entry] = text
                got, detail = await outcome(stub, modules, entry)
                if got == "ok":
                    node = npmtrees.run_node(modules, entry)
                    result = (
                        "matches Node"
                        if node.ok and node.value == detail
                        else f"differs from Node: {node}"
                    )
                else:
                    result = f"{got}: {str(detail)[:140]}"
                print(
                    f"| {name} | {version} | {flavour} | `{entry}` | {len(modules)} | {result} |",
                    flush=True,
                )
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(_table())


@pytest.mark.skipif(not npmtrees.node_available(), reason="node/npm not installed")
async def test_create_require_resolves_within_the_tree_as_node_does(stub):
    """node:module's createRequire from an ES module: by file: URL string, URL object, a
    directory URL, through a directory whose name needs percent-encoding."""
    modules = {
        "main.mjs": "import f from './my dir/a.mjs'; export default () => f();",
        "my dir/a.mjs": (
            "import { createRequire, isBuiltin } from 'node:module';\n"
            "const require = createRequire(import.meta.url);\n"
            "const fromUrl = createRequire(new URL(import.meta.url));\n"
            "const fromDir = createRequire(new URL('./', import.meta.url));\n"
            "export default () => [require('./b.cjs').b, fromUrl('dep').name, fromDir('./data.json').x,\n"
            "  require.resolve('node:fs'), isBuiltin('node:fs'), typeof require('path').join];\n"
        ),
        "my dir/b.cjs": "exports.b = 'b';",
        "my dir/data.json": '{"x": [1, 2]}',
        "node_modules/dep/package.json": '{"name": "dep", "main": "lib/index.js"}',
        "node_modules/dep/lib/index.js": "exports.name = 'dep';",
    }
    node = npmtrees.run_node(modules, "main.mjs")
    assert node.ok, node
    assert node.value == ["b", "dep", [1, 2], "node:fs", True, "function"]
    assert await outcome(stub, modules, "main.mjs") == ("ok", node.value)
