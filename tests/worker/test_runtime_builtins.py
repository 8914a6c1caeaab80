# ruff: noqa: E501  (each case is one JavaScript expression, kept on as few lines as it reads)
"""The web globals and Node built-ins answer as Node does (node.js, web.js, vendored npm).

Each case is one expression; the same program runs as a Zako task (a real V8 instance with
the prelude) and under `node` (with cwd "/", Zako's fixed process.cwd()), and every answer
must be the same JSON. Skipped where `node` is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from zako_server.worker import runtime
from zako_server.worker.runtime import Instance

CASES = {
    # path (path-browserify)
    "path.join": "require('path').join('/a/b', '../c', './d.js')",
    "path.resolve": "require('node:path').resolve('x/y', '../z')",
    "path.relative": "require('path').relative('/a/b/c', '/a/d')",
    "path.parse": "require('path').parse('/home/u/file.tar.gz')",
    "path.format": "require('path').format({ dir: '/x', name: 'f', ext: '.js' })",
    "path.misc": "((p) => [p.sep, p.delimiter, p.posix === p, p.isAbsolute('/a'), p.extname('a.b.c'),"
    " p.basename('/a/b.js', '.js'), p.dirname('/a/b/c'), p.normalize('/a//b/../c/.')])(require('path'))",
    # util
    "util.format": "require('util').format('%s=%d %i %f %j %% %s', 'a', 42.5, 42.5, '1.5', {x: [1]}, 7, 'extra')",
    "util.format.o": "((u) => [u.format('%o', [1, 2]), u.format('%o', { a: { b: { c: { d: { e: { f: 1 } } } } } }), u.format('%o', 'str'), u.format('%O', 'str'), u.format('%o', 5), u.format('%o', new Map([[1, 2]])), u.format('%o', (a, b) => a), u.format('%o', { x: [1] })])(require('util'))",
    "util.format.objects": "require('util').format('%s', {a: 1}, [1, 'x'], null, undefined, 3n)",
    "util.inspect": "require('util').inspect({ a: 1, b: 'x', c: [1, 2, { d: new Map([[1, 2]]) }],"
    " e: new Set(['s']), f: null, g: undefined })",
    "util.inspect.depth": "require('util').inspect({ a: { b: { c: { d: { e: 1 } } } } })",
    "util.inspect.grouped": "require('util').inspect([Array.from({ length: 30 }, (_, i) => i * 7),"
    " Array.from({ length: 26 }, (_, i) => String.fromCharCode(97 + i).repeat(i % 4 + 1))])",
    "util.inspect.long": "require('util').inspect({ alpha: 'a'.repeat(30), beta: ['b'.repeat(30), 2],"
    " gamma: { delta: new Map([['k', [1, 2, 3]]]), epsilon: new Uint8Array(3) }, 'x-y': \"it's\","
    " f: async function g() {}, h: Object.assign(() => {}, { p: 1 }), n: Object.create(null) })",
    "util.inspect.strings": "require('util').inspect(['a\\nb', \"'\", '\\x01', 'ok', new Array(3), [1, , 3]])",
    "util.inspect.circular": "(() => { const o = { name: 'c', list: [] }; o.self = o; o.list.push(o, { back: o }); return [require('util').inspect(o), require('util').format('%s', o)]; })()",
    "util.inspect.custom": "((u) => [u.inspect(Buffer.from('hi')), u.inspect({ b: Buffer.alloc(60) }), u.inspect(new URLSearchParams('a=1&b=2')), u.inspect(new URL('https://u:p@a.example:8080/p?q=1#h')), u.inspect({ [u.inspect.custom]: () => 'custom!' }), u.inspect({ [u.inspect.custom]: () => ({ x: 1 }) }), u.inspect({ [u.inspect.custom]: (d, o, i) => typeof i })])(require('util'))",
    "util.inspect.many": "require('util').inspect(Array.from({ length: 120 }, (_, i) => i))",
    "util.inspect.class": "(() => { class Point { constructor() { this.x = 1; } }"
    " return require('util').inspect([new Point(), function named() {}, () => {}, Symbol('s'), -0]); })()",
    "util.types": "((t) => [t.isDate(new Date(0)), t.isRegExp(/x/), t.isPromise(Promise.resolve()),"
    " t.isTypedArray(new Uint8Array(1)), t.isMap(new Map()), t.isTypedArray([])])(require('util').types)",
    "util.isDeepStrictEqual": "[require('util').isDeepStrictEqual({a: [1, {b: 2}]}, {a: [1, {b: 2}]}),"
    " require('util').isDeepStrictEqual([1], ['1'])]",
    "util.promisify": "require('util').promisify((a, cb) => cb(null, a * 2))(21)",
    # events (events)
    "events": "(() => { const E = require('events'); const e = new E(); const out = [];"
    " e.on('x', (v) => out.push('on' + v)); e.once('x', (v) => out.push('once' + v));"
    " e.emit('x', 1); e.emit('x', 2); return [out, e.listenerCount('x'), E.EventEmitter === E,"
    " typeof E.once]; })()",
    # assert
    "assert": "(() => { const assert = require('assert'); const out = [];"
    " try { assert.strictEqual(1, 2); } catch (e) { out.push(e.name, e.code, e.actual, e.expected); }"
    " try { assert.deepStrictEqual({a: 1}, {a: 1}); out.push('deep ok'); } catch (e) { out.push('no'); }"
    " assert.throws(() => { throw new TypeError('t'); }, TypeError); out.push(typeof assert.strict);"
    " return out; })()",
    # querystring
    "querystring": "((q) => [q.parse('a=1&b=2&a=3&c=%20x+y&d'), q.stringify({ a: [1, 2], b: 'x y', c: true }),"
    " q.escape('a b&'), q.unescape('%41%')])(require('querystring'))",
    # url and URL (whatwg-url)
    "URL": "((u) => [u.href, u.protocol, u.host, u.hostname, u.port, u.pathname, u.search, u.hash,"
    " u.origin, u.username, u.searchParams.get('q')])("
    "new URL('HTTPS://user:pw@Example.COM:8080/a/./b/../c?q=1%202&r#frag'))",
    "URL.relative": "[new URL('../x?y', 'http://h/a/b/c').href, new URL('file:///tmp/a b').href,"
    " URL.canParse ? 'has' : 'no', new URL('http://[::1]:80/').href, new URL('http://0x7f.1/').host]",
    "URLSearchParams": "(() => { const p = new URLSearchParams('b=2&a=1&a=3'); p.append('c', 'x y');"
    " p.sort(); return [p.toString(), p.getAll('a'), [...p.keys()], p.has('b'), p.size]; })()",
    "url.legacy": "((u) => [u.parse('http://user@host.com:8080/p/a/t/h?query=string#hash').href,"
    " u.format({ protocol: 'https', hostname: 'x.org', pathname: '/a', search: '?b=1' }),"
    " u.fileURLToPath('file:///tmp/a%20b'), u.pathToFileURL('/tmp/a b').href])(require('url'))",
    # string_decoder
    "string_decoder": "(() => { const { StringDecoder } = require('string_decoder');"
    " const d = new StringDecoder('utf8'); const b = Buffer.from('€uro');"
    " return [d.write(b.subarray(0, 1)), d.write(b.subarray(1)), d.end()]; })()",
    # Buffer (buffer)
    "Buffer": "[Buffer.from('héllo').toString('hex'), Buffer.from('aGk=', 'base64').toString(),"
    " Buffer.concat([Buffer.from('a'), Buffer.alloc(2, 1)]).toJSON(), Buffer.byteLength('€'),"
    " Buffer.isBuffer(Buffer.alloc(1)), Buffer.isBuffer(new Uint8Array(1)),"
    " Buffer.from([1, 2, 3, 4]).readUInt32LE(0), Buffer.from('abc').equals(Buffer.from('abc')),"
    " Buffer.from('hello').subarray(1, 3).toString(), Buffer.from('hi').toString('base64'),"
    " require('buffer').Buffer === Buffer]",
    # web
    "TextEncoder": "[Array.from(new TextEncoder().encode('a€😀')),"
    " new TextDecoder().decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61, 0xff, 0xe2, 0x82])),"
    " new TextEncoder().encodeInto('a€', new Uint8Array(3))]",
    "atob": "[btoa('hello!?'), atob(' aGVs bG8 '), (() => { try { atob('*'); } catch (e) {"
    " return [e.name, e instanceof DOMException]; } })()]",
    "structuredClone": "((c) => [c.m instanceof Map, c.m.get('k').d.getTime(), c.self === c,"
    " c.u8[1]])((() => { const o = { m: new Map([['k', { d: new Date(5) }]]), u8: new Uint8Array([1, 2]) };"
    " o.self = o; return structuredClone(o); })())",
    "AbortController": "(() => { const c = new AbortController(); const seen = [];"
    " c.signal.addEventListener('abort', (e) => seen.push(e.type));"
    " c.abort(); return [c.signal.aborted, c.signal.reason.name, seen, AbortSignal.abort('r').reason]; })()",
    "AbortSignal.timeout": "new Promise((resolve) => { const s = AbortSignal.timeout(5); s.onabort = () => resolve([s.aborted, s.reason.name, s.reason.message]); setTimeout(() => {}, 50); })",
    "EventTarget": "(() => { const t = new EventTarget(); let n = 0; const f = () => n++;"
    " t.addEventListener('x', f); t.addEventListener('x', f); t.dispatchEvent(new Event('x'));"
    " t.removeEventListener('x', f); t.dispatchEvent(new Event('x')); return n; })()",
    "digest": "crypto.subtle.digest('SHA-256', new TextEncoder().encode('abc'))"
    ".then((b) => Buffer.from(b).toString('hex'))",
    "digest.sha1": "crypto.subtle.digest('SHA-1', new Uint8Array(100).fill(7))"
    ".then((b) => Buffer.from(b).toString('hex'))",
    "node:crypto": "((c) => [c.createHash('sha256').update('ab').update(Buffer.from('c')).digest('hex'),"
    " c.createHash('sha1').update('x', 'utf8').digest('base64'), c.randomBytes(5).length,"
    " Buffer.isBuffer(c.randomBytes(2)), typeof c.randomUUID(), c.randomInt(3) < 3,"
    " c.randomFillSync(new Uint8Array(4), 1, 2).length])(require('node:crypto'))",
    "perf_hooks": "[typeof require('perf_hooks').performance.now(), require('perf_hooks').performance === performance]",
    # pure queries of a world without a terminal or a host to inspect (stdout and stderr
    # are pipes for node here too)
    "tty.isatty": "((t) => [t.isatty(1), t.isatty(2), t.isatty(99), typeof t.WriteStream])(require('tty'))",
    "os.platform": "((os) => [os.platform() === process.platform, os.arch() === process.arch, os.type(), os.endianness(), os.EOL])(require('node:os'))",
    "module": "((m) => [m.isBuiltin('node:path'), m.isBuiltin('fs/promises'), m.isBuiltin('zako:core'), m.isBuiltin('nope'),"
    " m.builtinModules.includes('path'), m.builtinModules.includes('node:path'), typeof m.createRequire('/x.js'),"
    " m.createRequire('/x.js').resolve('node:path'), m.createRequire('file:///a/b.js')('path').sep])(require('module'))",
    "globals": "[typeof global, global === globalThis, typeof queueMicrotask, typeof process.nextTick,"
    " process.cwd(), typeof Buffer, typeof structuredClone]",
}

PROGRAM = """module.exports = async () => {
  const out = {};
  for (const [name, f] of Object.entries(CASES)) {
    try { out[name] = await f(); } catch (e) { out[name] = 'threw ' + e.name + ': ' + e.message; }
  }
  return JSON.parse(JSON.stringify(out));
};
const CASES = {
CASES_HERE
};
""".replace(
    "CASES_HERE",
    ",\n".join(f"  {json.dumps(name)}: () => ({expr})" for name, expr in CASES.items()),
)

CONFIG = {
    "kind": "build",
    "hermetic": True,
    "taskId": "t",
    "labels": {},
    "version": "test",
    "maxLogBytes": 100_000,
    "maxResultBytes": 1_000_000,
    "reuse": False,
}


async def zako(source: str) -> dict:
    instance = Instance()
    try:
        text = await instance.eval(
            runtime.task_script(instance.token, CONFIG, [("main.js", source)], "main.js", "")
        )
        report = json.loads(text)
        for _ in range(100):  # settle microtasks and (virtual) timers, as the worker does
            if report["outcome"] is not None:
                break
            if report["timers"]:
                timer_id, _ = min(report["timers"], key=lambda t: (t[1], t[0]))
                await instance.eval(runtime.fire_script(instance.token, timer_id))
            report = json.loads(await instance.eval(runtime.poll_script(instance.token)))
        outcome = report["outcome"]
        assert outcome["ok"], outcome
        return json.loads(outcome["value"])
    finally:
        instance.close()


def node(source: str) -> dict:
    script = (
        "const module = { exports: {} };\n"
        + source
        + "\nmodule.exports().then((v) => process.stdout.write(JSON.stringify(v)));"
    )
    done = subprocess.run(
        ["node", "-e", script], cwd="/", capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_builtins_and_web_globals_answer_as_node_does():
    ours = await zako(PROGRAM)
    theirs = node(PROGRAM)
    assert set(ours) == set(CASES)
    different = {name: (ours[name], theirs[name]) for name in CASES if ours[name] != theirs[name]}
    assert different == {}
