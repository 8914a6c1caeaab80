"""Real npm packages run in a hermetic `build` context as they run under Node (issue 14).

Each package is installed from the npm registry once into the shared test cache
(tests/npmtrees.py), sent as the task's module tree with an entry module, and run both by
a Zako server and by `node` on the same files. Output that does not depend on the clock or
on randomness must be identical; for random-based output (uuid, nanoid) the shape is
compared, and two Zako runs of the same task must agree byte for byte.
"""

from __future__ import annotations

import json
import re

import grpc
import pytest

from tests import npmtrees
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

pytestmark = pytest.mark.skipif(not npmtrees.node_available(), reason="node/npm not installed")

# Files no package loads at run time; leaving them out keeps lodash under the module limit.
_UNUSED = re.compile(r"(\.md|\.markdown|\.d\.ts|\.d\.mts|\.d\.cts|\.map|LICENSE[^/]*|\.txt)$", re.I)

CASES = {
    "minimatch@9.0.5": """const { minimatch, makeRe } = require('minimatch');
module.exports = () => [minimatch('src/a/b.js', 'src/**/*.js'), minimatch('x.ts', '*.{js,jsx}'),
  minimatch('.hidden', '*', { dot: true }), makeRe('a/{b,c}/*.md').source,
  require('minimatch').braceExpand('{1..3}-{a,b}')];""",
    "lodash@4.17.21": """const _ = require('lodash');
module.exports = () => [_.chunk([1, 2, 3, 4, 5], 2), _.template('hi <%= who %>!')({ who: 'you' }),
  _.sortBy([{ n: 'b', a: 2 }, { n: 'a', a: 1 }], 'a'), _.uniqueId('x'), _.camelCase('Foo Bar-baz'),
  _.merge({ a: { b: 1 } }, { a: { c: 2 } }), typeof _.now(), _.isDate(new Date(0)), _.VERSION];""",
    "diff@5.2.0": """const Diff = require('diff');
module.exports = () => [Diff.createTwoFilesPatch('a.txt', 'b.txt', 'one\\ntwo\\nthree\\n',
  'one\\n2\\nthree\\nfour\\n', 'old', 'new'), Diff.diffWords('the quick fox', 'the slow fox')
  .map((p) => [p.value, !!p.added, !!p.removed]),
  Diff.diffLines('a\\nb\\n', 'a\\nc\\n', { timeout: 50 }).length];""",
    "js-yaml@4.1.0": """const yaml = require('js-yaml');
module.exports = () => {
  const doc = yaml.load('when: 2001-12-14t21:59:43.10-05:00\\nday: 2002-12-14\\nlist: [1, two]\\n');
  const at = new Date(Date.UTC(2020, 1, 29));
  return [doc, doc.when instanceof Date, yaml.dump({ at, n: [1, 'x'] })];
};""",
    "@iarna/toml@2.2.5": """const TOML = require('@iarna/toml');
module.exports = () => {
  const doc = TOML.parse('odt = 1979-05-27T07:32:00Z\\nld = 1979-05-27\\n'
    + 'ldt = 1979-05-27T07:32:00\\n[t]\\nx = 1.5\\n');
  const text = TOML.stringify({ a: { b: [1, 2] }, d: new Date(0) });
  return [JSON.parse(JSON.stringify(doc)), doc.odt instanceof Date, text];
};""",
    "yargs-parser@21.1.1": """const parse = require('yargs-parser');
module.exports = () => [parse(['--foo', 'bar', '-abc', '--num=5', 'pos', '--no-x', '--', 'rest']),
  parse('--list a --list b -v -v', { array: ['list'], count: ['v'] })];""",
    "uuid@10.0.0": """const uuid = require('uuid');
module.exports = () => [uuid.v4(), uuid.v7(), uuid.v5('hello', uuid.v5.DNS), uuid.NIL,
  uuid.validate(uuid.v4()), uuid.version(uuid.v7())];""",
    "nanoid@3.3.7": """const { nanoid, customAlphabet } = require('nanoid');
module.exports = () => [nanoid(), nanoid(10), customAlphabet('abc', 8)()];""",
    "nanoid@5.0.7": """module.exports = async () => {
  const { nanoid, customAlphabet } = await import('nanoid'); // ES module only, node:crypto
  return [nanoid(), nanoid(10), customAlphabet('abc', 8)()];
};""",
}
RANDOM_SHAPES = {
    "uuid@10.0.0": [
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        None,
        None,
        None,
        None,
    ],
    "nanoid@3.3.7": [r"[A-Za-z0-9_-]{21}", r"[A-Za-z0-9_-]{10}", r"[abc]{8}"],
    "nanoid@5.0.7": [r"[A-Za-z0-9_-]{21}", r"[A-Za-z0-9_-]{10}", r"[abc]{8}"],
}


def tree(spec: str) -> dict[str, str]:
    modules = npmtrees.install_and_pack(spec)
    modules = {k: v for k, v in modules.items() if not _UNUSED.search(k)}
    if spec.startswith("lodash@"):  # 1,000 per-method files; the package's main is one
        modules = {k: v for k, v in modules.items() if k.endswith(("lodash.js", "package.json"))}
    return modules


async def run_zako(stub, modules: dict[str, str], source: str) -> object:
    task = pb.Task(
        source=source,
        entry_name="main.js",
        modules=[pb.Module(name=k, source=v) for k, v in modules.items()],
        context=pb.CONTEXT_KIND_BUILD,
    )
    reply = await stub.Run(pb.RunRequest(task=task), timeout=60)
    assert reply.WhichOneof("outcome") == "completed", reply.failed.error
    return json.loads(reply.completed.result.value_json)


@pytest.mark.parametrize("spec", list(CASES))
async def test_package_runs_as_under_node(zako_server, spec):
    modules = tree(spec)
    source = CASES[spec]
    async with grpc.aio.insecure_channel(
        zako_server.target, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        ours = await run_zako(stub, modules, source)
        again = await run_zako(stub, modules, source)
    assert json.dumps(ours) == json.dumps(again)  # hermetic: byte for byte
    node = npmtrees.run_node({**modules, "main.js": source}, "main.js")
    assert node.ok, node
    shapes = RANDOM_SHAPES.get(spec)
    if shapes is None:
        assert ours == node.value
        return
    assert len(ours) == len(node.value)
    for mine, theirs, shape in zip(ours, node.value, shapes, strict=True):
        if shape is None:
            assert mine == theirs
        else:
            assert re.fullmatch(shape, mine) and re.fullmatch(shape, theirs), (mine, theirs)


async def test_packages_run_in_a_warm_isolate_under_lockdown(server_factory):
    """The same trees, twice each on a one-worker server: the second run is in the warm
    (hardened, frozen) isolate, and answers the same bytes as the fresh one."""
    server = server_factory(min_workers=1, max_workers=1)
    async with grpc.aio.insecure_channel(
        server.target, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for spec, source in CASES.items():
            task = pb.Task(
                source=source,
                entry_name="main.js",
                modules=[pb.Module(name=k, source=v) for k, v in tree(spec).items()],
                cache=pb.CACHE_POLICY_SKIP,  # both must run: the isolates are checked
            )
            first, second = [await stub.Run(pb.RunRequest(task=task), timeout=60) for _ in "12"]
            assert second.completed.result.timings.warm_isolate, (spec, second)
            assert second.completed.result.value_json == first.completed.result.value_json, spec
