/*
 * Node's `assert` and `assert/strict`, and the deep equality util.isDeepStrictEqual uses.
 *
 * The API code commonly calls (ok, equal, strictEqual, deepEqual, deepStrictEqual and their
 * negations, throws, doesNotThrow, rejects, doesNotReject, match, doesNotMatch, fail,
 * ifError) with AssertionError's fields (code 'ERR_ASSERTION', actual, expected, operator,
 * generatedMessage); messages are shorter than Node's diffs. Made per task like every
 * built-in module (node.js), compiled on the first require of the isolate.
 *
 * The result is a function taking (host) and returning { makeAssert, deepEqual }.
 */
(function zakoAssert(host) {
  'use strict';
  const { defineProperty, keys, getPrototypeOf } = Object;
  const NativeError = Error;
  const tag = (v) => Object.prototype.toString.call(v);

  function deepEqual(a, b, strict, memo) {
    if (strict ? Object.is(a, b) : a == b || (a !== a && b !== b)) return true; // eslint-disable-line eqeqeq
    if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
    if (strict && getPrototypeOf(a) !== getPrototypeOf(b)) return false;
    const ta = tag(a);
    if (ta !== tag(b)) return false;
    memo = memo || new Map();
    if (memo.get(a) === b) return true;
    memo.set(a, b);
    if (ta === '[object Date]') return a.getTime() === b.getTime();
    if (ta === '[object RegExp]') return a.source === b.source && a.flags === b.flags;
    if (ta === '[object Number]' || ta === '[object String]' || ta === '[object Boolean]') return Object.is(a.valueOf(), b.valueOf());
    if (a instanceof NativeError && (a.message !== b.message || a.name !== b.name)) return false;
    if (ArrayBuffer.isView(a)) {
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
    }
    if (ta === '[object Map]') {
      if (a.size !== b.size) return false;
      for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k), strict, memo)) return false;
    }
    if (ta === '[object Set]') {
      if (a.size !== b.size) return false;
      for (const v of a) if (!b.has(v)) return false;
    }
    const ka = keys(a);
    const kb = keys(b);
    if (ka.length !== kb.length) return false;
    for (const k of ka) if (!Object.prototype.hasOwnProperty.call(b, k) || !deepEqual(a[k], b[k], strict, memo)) return false;
    return true;
  }

  function makeAssert(strictMode) {
    class AssertionError extends NativeError {
      constructor(options = {}) {
        const generated = options.message === undefined;
        super(generated ? host.inspect(options.actual) + ' ' + options.operator + ' ' + host.inspect(options.expected) : '' + options.message);
        defineProperty(this, 'name', { value: 'AssertionError', writable: true, configurable: true });
        this.generatedMessage = generated;
        this.code = 'ERR_ASSERTION';
        this.actual = options.actual;
        this.expected = options.expected;
        this.operator = options.operator;
      }
    }
    const fail = (actual, expected, message, operator) => {
      if (message instanceof NativeError) throw message;
      throw new AssertionError({ actual, expected, message, operator });
    };
    function ok(value, message) { if (!value) fail(value, true, arguments.length === 0 ? 'No value argument passed to `assert.ok()`' : message, '=='); }
    const matches = (e, expected) => {
      if (expected === undefined) return true;
      if (tag(expected) === '[object RegExp]') return expected.test('' + e);
      if (typeof expected === 'function') {
        if (expected.prototype !== undefined && e instanceof expected) return true;
        if (NativeError.isPrototypeOf(expected) || expected === NativeError) return false;
        return expected.call({}, e) === true;
      }
      if (typeof expected === 'object' && expected !== null) {
        for (const k of keys(expected)) {
          if (tag(expected[k]) === '[object RegExp]' && typeof e[k] === 'string' ? !expected[k].test(e[k]) : !deepEqual(e[k], expected[k], true)) return false;
        }
        return true;
      }
      return false;
    };
    const thrown = (fn) => { try { fn(); } catch (e) { return { e }; } return null; };
    function assert(value, message) { return ok.apply(undefined, arguments); }
    Object.assign(assert, {
      AssertionError,
      ok,
      fail: (message = 'Failed') => fail(undefined, undefined, message, 'fail'),
      equal: strictMode ? (a, b, m) => { if (!Object.is(a, b)) fail(a, b, m, 'strictEqual'); } : (a, b, m) => { if (!(a == b || (a !== a && b !== b))) fail(a, b, m, '=='); }, // eslint-disable-line eqeqeq
      notEqual: strictMode ? (a, b, m) => { if (Object.is(a, b)) fail(a, b, m, 'notStrictEqual'); } : (a, b, m) => { if (a == b) fail(a, b, m, '!='); }, // eslint-disable-line eqeqeq
      strictEqual: (a, b, m) => { if (!Object.is(a, b)) fail(a, b, m, 'strictEqual'); },
      notStrictEqual: (a, b, m) => { if (Object.is(a, b)) fail(a, b, m, 'notStrictEqual'); },
      deepEqual: (a, b, m) => { if (!deepEqual(a, b, strictMode)) fail(a, b, m, strictMode ? 'deepStrictEqual' : 'deepEqual'); },
      notDeepEqual: (a, b, m) => { if (deepEqual(a, b, strictMode)) fail(a, b, m, strictMode ? 'notDeepStrictEqual' : 'notDeepEqual'); },
      deepStrictEqual: (a, b, m) => { if (!deepEqual(a, b, true)) fail(a, b, m, 'deepStrictEqual'); },
      notDeepStrictEqual: (a, b, m) => { if (deepEqual(a, b, true)) fail(a, b, m, 'notDeepStrictEqual'); },
      throws: (fn, expected, message) => {
        if (typeof expected === 'string') { message = expected; expected = undefined; }
        const t = thrown(fn);
        if (t === null) fail(undefined, expected, message === undefined ? 'Missing expected exception.' : message, 'throws');
        if (!matches(t.e, expected)) throw t.e;
      },
      doesNotThrow: (fn, expected, message) => {
        const t = thrown(fn);
        if (t !== null) fail(t.e, expected, typeof expected === 'string' ? expected : message === undefined ? 'Got unwanted exception.\nActual message: "' + (t.e && t.e.message) + '"' : message, 'doesNotThrow');
      },
      rejects: async (p, expected, message) => {
        try { await (typeof p === 'function' ? p() : p); } catch (e) { if (!matches(e, expected)) throw e; return; }
        fail(undefined, expected, message === undefined ? 'Missing expected rejection.' : message, 'rejects');
      },
      doesNotReject: async (p, expected, message) => {
        try { await (typeof p === 'function' ? p() : p); } catch (e) { fail(e, expected, message === undefined ? 'Got unwanted rejection.' : message, 'doesNotReject'); }
      },
      match: (s, re, m) => { if (typeof s !== 'string' || !re.test(s)) fail(s, re, m, 'match'); },
      doesNotMatch: (s, re, m) => { if (typeof s !== 'string' || re.test(s)) fail(s, re, m, 'doesNotMatch'); },
      ifError: (v) => { if (v !== null && v !== undefined) throw v; },
    });
    assert.strict = strictMode ? assert : host.builtin('assert/strict');
    return assert;
  }

  return Object.freeze({ makeAssert, deepEqual });
})
