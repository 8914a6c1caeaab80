/*
 * Hardening for an isolate that will run more than one task of a tenant (a warm isolate).
 *
 * Why: a warm isolate is shared by tasks in sequence, so nothing one task does may reach
 * the next. Module state lives in each task's own closures and the prelude resets its
 * own state; what remains shared is the realm itself. This freezes every intrinsic (what
 * is reachable from the global object, plus the ones only syntax reaches, such as the
 * iterator and generator prototypes), as Node's --frozen-intrinsics and Hardened
 * JavaScript's lockdown do. The global object stays open, because scripts legitimately
 * create globals; the prelude snapshots it after this runs and restores it after each task.
 *
 * Freezing alone would break ordinary code through the "override mistake": assigning
 * `this.name = ...` in an Error subclass, or `o.toString = ...` on a plain object, fails
 * when the inherited property is read-only. So the properties of the prototypes that
 * ordinary objects inherit from become accessors first: reading gives the original value,
 * and assigning on an inheriting object defines an own property there, as it would have
 * before freezing. Assigning on the prototype itself throws a TypeError (even in sloppy
 * code), which the worker recognises and answers by re-running the task fresh.
 *
 * The same goes for the methods of the typed arrays' shared prototype, which Buffer's own
 * prototype overrides.
 *
 * Left alone on purpose: properties V8 guards with protectors (Array.prototype's
 * constructor and iterator, Promise.prototype.then ...); turning them into accessors
 * would switch optimised paths for arrays, promises and for-of off in every later task.
 *
 * The result is a function taking (skip): objects not to touch (proxies whose traps throw
 * by design). It returns how many objects it froze.
 */
(function zakoLockdown(skip) {
  'use strict';
  const G = globalThis;
  const { defineProperty, getOwnPropertyDescriptor, getPrototypeOf, freeze } = Object;
  const ownKeys = Reflect.ownKeys;
  const NativeTypeError = TypeError;
  const isObject = (v) => v !== null && (typeof v === 'object' || typeof v === 'function');
  const roots = [G];
  const hidden = (make) => {
    try {
      const v = make();
      if (isObject(v)) roots.push(v);
    } catch (e) { /* not in this V8: nothing to freeze */ }
  };

  // Intrinsics that no global property leads to.
  hidden(() => getPrototypeOf(function* () {}));
  hidden(() => getPrototypeOf(async function () {}));
  hidden(() => getPrototypeOf(async function* () {}));
  hidden(() => getPrototypeOf((function* () {})()));
  hidden(() => getPrototypeOf((async function* () {})()));
  hidden(() => getPrototypeOf([][Symbol.iterator]()));
  hidden(() => getPrototypeOf(''[Symbol.iterator]()));
  hidden(() => getPrototypeOf(new Map()[Symbol.iterator]()));
  hidden(() => getPrototypeOf(new Set()[Symbol.iterator]()));
  hidden(() => getPrototypeOf(/a/[Symbol.matchAll]('')));
  hidden(() => getPrototypeOf([].values().map((x) => x)));
  hidden(() => getPrototypeOf(Iterator.from({ next() { return { done: true }; } })));
  hidden(() => getPrototypeOf(Int8Array));
  // Only where Intl is real (a context with system access; elsewhere it is a denied stub).
  hidden(() => getPrototypeOf(new Intl.Segmenter().segment('')));
  hidden(() => getPrototypeOf(new Intl.Segmenter().segment('')[Symbol.iterator]()));
  hidden(() => getOwnPropertyDescriptor(Function.prototype, 'caller').get);
  // Every error's own `stack` accessor is one shared pair of native functions.
  hidden(() => getOwnPropertyDescriptor(new Error(), 'stack').get);
  hidden(() => getOwnPropertyDescriptor(new Error(), 'stack').set);
  hidden(() => (function () { 'use strict'; return getOwnPropertyDescriptor(arguments, 'callee').get; })());

  // RegExp's legacy statics (RegExp.$1, lastMatch, input ...) hold the last match of
  // whichever task ran a regular expression last.
  for (const key of ownKeys(RegExp)) {
    if (typeof key === 'string' && (key[0] === '$' || key === 'input' || key === 'lastMatch' ||
        key === 'lastParen' || key === 'leftContext' || key === 'rightContext')) {
      delete RegExp[key];
    }
  }

  function tame(proto, key) {
    const d = getOwnPropertyDescriptor(proto, key);
    if (d === undefined || !('value' in d) || !d.configurable) return;
    const value = d.value;
    const name = typeof key === 'symbol' ? '[' + key.description + ']' : key;
    defineProperty(proto, key, {
      get: function () { return value; },
      set: function (v) {
        if (this === proto) {
          throw new NativeTypeError('Cannot assign to read only property \'' + name + "' of a frozen built-in");
        }
        defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
      },
      enumerable: d.enumerable,
      configurable: false,
    });
  }
  const everything = [Object.prototype, Function.prototype, Error.prototype];
  for (const E of [EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError]) {
    everything.push(E.prototype);
  }
  if (typeof AggregateError === 'function') everything.push(AggregateError.prototype);
  for (const proto of everything) {
    for (const key of ownKeys(proto)) if (key !== '__proto__') tame(proto, key);
  }
  // Typed arrays' shared prototype too, but its methods only: Buffer (node.js) subclasses
  // Uint8Array and assigns its own fill, slice, toString ... on Buffer.prototype. The
  // constructor and the iterator stay data properties (V8 protectors guard them).
  const typedProto = getPrototypeOf(Uint8Array.prototype);
  for (const key of ownKeys(typedProto)) {
    if (key !== 'constructor' && key !== Symbol.iterator) tame(typedProto, key); // data properties only
  }

  const seen = new Set(skip);
  const queue = roots;
  let frozen = 0;
  for (let i = 0; i < queue.length; i++) {
    const o = queue[i];
    if (seen.has(o)) continue;
    seen.add(o);
    let keys;
    try {
      if (o !== G) { freeze(o); frozen++; }
      keys = ownKeys(o);
    } catch (e) {
      continue; // a proxy that refuses: its target is ours and already immutable
    }
    const proto = getPrototypeOf(o);
    if (proto !== null) queue.push(proto);
    for (let j = 0; j < keys.length; j++) {
      const d = getOwnPropertyDescriptor(o, keys[j]);
      if (d === undefined) continue;
      if ('value' in d) {
        if (isObject(d.value)) queue.push(d.value);
      } else {
        if (d.get !== undefined) queue.push(d.get);
        if (d.set !== undefined) queue.push(d.set);
      }
    }
  }
  return frozen;
})
