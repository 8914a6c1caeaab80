/*
 * The Zako prelude: the host's half of every V8 instance, evaluated before any task code.
 *
 * Why it looks the way it does:
 * - Python keeps the authority. Every piece of JavaScript (this prelude, each module's
 *   compilation, the entry call, every timer callback) runs inside an eval that Python
 *   started and can cancel; nothing here can run on its own (no Atomics.waitAsync timers,
 *   no FinalizationRegistry callbacks, no WebAssembly background compiles), so a
 *   terminated eval really means "no task code is running".
 * - Results, errors and log lines are handed over as one JSON text per poll, built by
 *   string concatenation from primitives: a task that patches Object.prototype.toJSON,
 *   Array.prototype or RegExp cannot change what Python reads about another part of
 *   the task, and anything garbled is the task's own problem (Python validates it).
 * - The API Python calls lives on a non-writable global and checks a per-instance token
 *   that only Python knows, so task code can neither replace it nor call it.
 * - Error.prepareStackTrace is ours and fixed: it hides host frames, undoes the module
 *   wrapper's column shift on line 1 and remembers the innermost task frame per error.
 */
(function zakoPrelude(token, prefixLength, libraries, vendor, makeModules, nodeBuiltins) {
  'use strict';

  // Intrinsics, captured before task code can replace them.
  const G = globalThis;
  const FP = Function.prototype;
  const uncurry = FP.bind.bind(FP.call);
  const apply = Reflect.apply;
  const { defineProperty, getOwnPropertyDescriptor, getPrototypeOf, freeze, keys, is } = Object;
  const toTag = uncurry(Object.prototype.toString);
  const hasOwnProperty = uncurry(Object.prototype.hasOwnProperty);
  const fnSource = uncurry(FP.toString);
  const charCode = uncurry(String.prototype.charCodeAt);
  const strSlice = uncurry(String.prototype.slice);
  const strIndexOf = uncurry(String.prototype.indexOf);
  const strLastIndexOf = uncurry(String.prototype.lastIndexOf);
  const strStarts = uncurry(String.prototype.startsWith);
  const arrJoin = uncurry(Array.prototype.join);
  const isArray = Array.isArray;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const dateNow = Date.now;
  const dateISO = uncurry(Date.prototype.toISOString);
  const NativeError = Error;
  const NativeTypeError = TypeError;
  const NativeRangeError = RangeError;
  const NativePromise = Promise;
  const NativeProxy = Proxy;
  const promiseThen = uncurry(Promise.prototype.then);
  const resolved = Promise.resolve.bind(Promise);
  const NativeMap = Map;
  const mapGet = uncurry(Map.prototype.get);
  const mapSet = uncurry(Map.prototype.set);
  const mapHas = uncurry(Map.prototype.has);
  const mapDelete = uncurry(Map.prototype.delete);
  const mapForEach = uncurry(Map.prototype.forEach);
  const mapSize = uncurry(getOwnPropertyDescriptor(Map.prototype, 'size').get);
  const setForEach = uncurry(Set.prototype.forEach);
  const setSize = uncurry(getOwnPropertyDescriptor(Set.prototype, 'size').get);
  const NativeWeakMap = WeakMap;
  const wmGet = uncurry(WeakMap.prototype.get);
  const wmSet = uncurry(WeakMap.prototype.set);
  const isView = ArrayBuffer.isView;
  const ownKeys = Reflect.ownKeys;
  const isExtensible = Object.isExtensible;
  const indirectEval = G.eval;
  const globalProto = getPrototypeOf(G);

  // Per-task state; only this closure can reach it.
  const locations = new NativeWeakMap(); // error -> innermost task frame
  const pinned = new NativeWeakMap(); // error -> where the module system says it arose
  const reasons = new NativeWeakMap(); // errors the host made -> failure reason
  const timers = new NativeMap(); // id -> { fn, args, due }
  const mapClear = uncurry(Map.prototype.clear);
  let nextTimer = 1;
  let logs = [];
  let logCount = 0;
  let logBytes = 0;
  let maxLogBytes = 0;
  let logLines = 0; // kept this task: bounded too, since a line costs memory however short
  let maxLogLines = 0;
  let dropped = 0;
  let indent = '';
  let maxResultBytes = 0;
  let configured = false;
  let started = false;
  let outcome = null; // JSON text once the task has settled
  let taskIdRead = false; // the task read context.taskId (see configure)
  let contextObject = null;
  let coreModule = null;
  let compiling = null; // name of the entry module being compiled, for its syntax errors
  // Set once the isolate is hardened for reuse: the kind-dependent globals are fixed from
  // then on, and `globals` maps the global object's own properties (key -> descriptor),
  // in their order, to restore after a task.
  let hardenedFor = null;
  let globals = null;

  const append = (array, index, value) =>
    defineProperty(array, index, { value, writable: true, enumerable: true, configurable: true });
  const q = (s) => stringify(s); // safe: no toJSON lookup for a string primitive
  const num = (n) => (typeof n === 'number' && n === n && n !== 1 / 0 && n !== -1 / 0 ? '' + n : 'null');
  const checkToken = (t) => {
    if (t !== token) throw new NativeError('the Zako host API is not for task code');
  };
  const safe = (f, fallback) => {
    try { return f(); } catch (e) { return fallback; }
  };

  function utf8Length(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = charCode(s, i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length &&
               charCode(s, i + 1) >= 0xdc00 && charCode(s, i + 1) < 0xe000) { n += 4; i++; }
      else n += 3;
    }
    return n;
  }

  // The runtime's own libraries (web, node, assert, inspect, random, lockdown) arrive as
  // text and are compiled once per isolate, the first time a task needs one: pre-parsing
  // them all at install would cost every new isolate ~2 ms. Each is a function taking
  // `host` (defined below); what they make for a task is per task (see `cached`).
  const compiledLibraries = new NativeMap(); // name -> what its function returned
  const compile = (name) => indirectEval('(' + libraries[name] + ')\n//# sourceURL=zako:' + name);
  function library(name, check) {
    let lib = mapGet(compiledLibraries, name);
    if (lib === undefined) {
      lib = compile(name)(host);
      if (check !== undefined) check(lib);
      mapSet(compiledLibraries, name, lib);
    }
    return lib;
  }

  // ---- stack traces -----------------------------------------------------------------
  function errorHeader(e) {
    const name = safe(() => { const n = e.name; return n === undefined ? 'Error' : '' + n; }, 'Error');
    const message = safe(() => { const m = e.message; return m === undefined ? '' : '' + m; }, '');
    return message === '' ? name : name === '' ? message : name + ': ' + message;
  }

  let moduleSystem = null; // modules.js, made in the modules section below
  function prepareStackTrace(error, sites) {
    let out = errorHeader(error);
    let first = null;
    for (let i = 0; i < sites.length; i++) {
      const site = sites[i];
      const file = site.getScriptNameOrSourceURL();
      // modules.js maps the script back to the author's module, line and column.
      const at = typeof file === 'string' && moduleSystem !== null
        ? moduleSystem.frame(file, site.getLineNumber(), site.getColumnNumber()) : undefined;
      if (at === undefined) continue; // host frames and eval'd code stay hidden
      if (first === null) first = at;
      const where = at.module + ':' + at.line + ':' + at.column;
      let name = site.getFunctionName() || site.getMethodName();
      // In an ES module, V8 names exported functions after the CommonJS the transform
      // wrote ("exports.default"); Node shows the export's name.
      if (at.esm && typeof name === 'string' && strStarts(name, 'exports.')) name = strSlice(name, 8);
      if (site.isConstructor()) name = 'new ' + (name || '<anonymous>');
      out += '\n    at ' + (site.isAsync() ? 'async ' : '') + (name ? name + ' (' + where + ')' : where);
    }
    if (first !== null && error !== null && (typeof error === 'object' || typeof error === 'function')) {
      wmSet(locations, error, first);
    }
    return out;
  }
  defineProperty(NativeError, 'prepareStackTrace', {
    value: prepareStackTrace, writable: false, enumerable: false, configurable: false,
  });
  NativeError.stackTraceLimit = 50;

  // Every task in a warm isolate shares this class, and any CapabilityError hands user
  // code its prototype and constructor: both are frozen, in every isolate (issue 12). The
  // name is an accessor, as lockdown.js tames inherited properties, so that assigning
  // `e.name` on an instance still works.
  class CapabilityError extends NativeError {}
  {
    const proto = CapabilityError.prototype;
    // Accessors written as methods: they have no `prototype` object to leak through.
    const { get, set } = getOwnPropertyDescriptor({
      get name() { return 'CapabilityError'; },
      set name(value) {
        if (this === proto) throw new NativeTypeError("Cannot assign to read only property 'name' of CapabilityError.prototype");
        defineProperty(this, 'name', { value, writable: true, enumerable: true, configurable: true });
      },
    }, 'name');
    defineProperty(proto, 'name', { get: freeze(get), set: freeze(set), enumerable: false, configurable: false });
    freeze(proto);
    freeze(CapabilityError);
  }

  function hostError(Ctor, message, reason, code) {
    const e = new Ctor(message);
    if (code !== undefined) defineProperty(e, 'code', { value: code, writable: true, configurable: true, enumerable: true });
    wmSet(reasons, e, reason);
    return e;
  }

  // ---- console ----------------------------------------------------------------------
  // How values print (Node's util.inspect and util.format) lives in inspect.js.
  const printer = () => library('inspect'); // compiled on the isolate's first log
  const show = (v) => printer().show(v);
  const inspectValue = (v, options) => printer().inspectValue(v, options);
  const format = (args) => printer().format(args);
  const IDENT = /^[A-Za-z_$][\w$]*$/; // a key that needs no quotes in a result path

  function emit(level, text) {
    if (indent !== '') text = indent + text.replace(/\n/g, '\n' + indent);
    const n = utf8Length(text);
    if (dropped > 0 || logBytes + n > maxLogBytes || logLines >= maxLogLines) { dropped++; return; }
    logBytes += n;
    logLines++;
    append(logs, logCount++, '[' + q(level) + ',' + q(text) + ',' + num(dateNow()) + ']');
  }

  function makeConsole() {
    const line = (level) => (...args) => { emit(level, safe(() => format(args), '[unformattable]')); };
    const c = {
      log: line('info'), info: line('info'), debug: line('debug'), warn: line('warn'), error: line('error'),
      dir: (v) => { emit('info', inspectValue(v)); },
      trace: (...args) => {
        const stack = safe(() => new NativeError('').stack, '');
        const at = strIndexOf(stack, '\n');
        emit('debug', 'Trace: ' + format(args) + (at >= 0 ? strSlice(stack, at) : ''));
      },
      assert: (ok, ...args) => { if (!ok) emit('error', 'Assertion failed' + (args.length ? ': ' + format(args) : '')); },
      group: (...args) => { if (args.length) emit('info', format(args)); indent += '  '; },
      groupEnd: () => { indent = strSlice(indent, 2); },
    };
    c.groupCollapsed = c.group;
    c.table = c.log;
    // Counters and timers are the task's own (console itself is shared, and frozen).
    const counts = () => cached('console:counts', () => new NativeMap());
    const timers = () => cached('console:timers', () => new NativeMap());
    const label = (l) => (l === undefined ? 'default' : '' + l);
    c.count = (l) => { const k = label(l); const n = (mapGet(counts(), k) || 0) + 1; mapSet(counts(), k, n); emit('info', k + ': ' + n); };
    c.countReset = (l) => { mapDelete(counts(), label(l)); };
    c.time = (l) => { mapSet(timers(), label(l), now()); };
    const elapsed = (l, method, end, args) => {
      const k = label(l);
      const start = mapGet(timers(), k);
      if (start === undefined) { emit('warn', "Warning: No such label '" + k + "' for console." + method + '()'); return; }
      if (end) mapDelete(timers(), k);
      emit('info', k + ': ' + (now() - start).toFixed(3) + 'ms' + (args.length ? ' ' + format(args) : ''));
    };
    c.timeEnd = (l) => elapsed(l, 'timeEnd', true, []);
    c.timeLog = (l, ...args) => elapsed(l, 'timeLog', false, args);
    return c;
  }

  // ---- capabilities -----------------------------------------------------------------
  // Plain assignment where allowed: it is cheaper than redefining a global, and works for
  // mini-racer's timer globals, which `var` made non-configurable.
  const setGlobal = (name, value) => {
    const d = getOwnPropertyDescriptor(G, name);
    if (d !== undefined && d.writable) G[name] = value;
    else defineProperty(G, name, { value, writable: true, enumerable: false, configurable: true });
  };

  // The context's description is only known at configure time; stubs read it when used.
  let where = 'a hermetic context';
  function denied(what) {
    const stub = function () { throw hostError(CapabilityError, what + ' is not available in ' + where, 'capability_denied'); };
    defineProperty(stub, 'name', { value: what });
    return stub;
  }

  // Per-task state of the virtual clock and the PRNG. Hermetic: Date.now() starts at the
  // task's epoch and does not advance while the task computes, only when a (virtual) timer
  // fires; Math.random / crypto draw from ChaCha20 keyed by SHA-256 of the task's seed.
  // System access: the real clock; Math.random is V8's own, crypto's stream is keyed from
  // it, the clock and the seed.
  const DEFAULT_EPOCH_MS = 1704067200000; // 2024-01-01T00:00:00Z, as validation.py
  let hermetic = true;
  let epochMs = DEFAULT_EPOCH_MS;
  let seed = '';
  let stream = null; // ChaCha20 keystream, made on the first draw of a task
  const now = () => (hermetic ? epochMs : dateNow());
  let timeOrigin = DEFAULT_EPOCH_MS; // when the task started, on its clock (performance)
  function draw() {
    if (stream === null) {
      const entropy = hermetic ? '' : '' + originalRandom() + originalRandom() + originalRandom() + originalRandom() + dateNow();
      const r = random();
      stream = r.chacha(r.sha256(r.utf8Encode('zako-seed:' + seed + entropy)));
    }
    return stream();
  }
  function randomBytes(bytes) {
    for (let i = 0; i < bytes.length; i += 4) {
      const r = draw();
      for (let j = 0; j < 4 && i + j < bytes.length; j++) bytes[i + j] = r >>> (j * 8);
    }
    return bytes;
  }
  const seededRandom = function random() { return ((draw() >>> 5) * 67108864 + (draw() >>> 6)) / 9007199254740992; };

  // The hermetic Date: the real one, except that "now" is the task's epoch. It keeps the
  // real Date.prototype, so instanceof, subclasses and every method work as in Node.
  const NativeDate = Date;
  const dateToString = uncurry(Date.prototype.toString);
  const HermeticDate = function Date(...args) {
    if (new.target === undefined) return dateToString(new NativeDate(epochMs));
    return Reflect.construct(NativeDate, args.length === 0 ? [epochMs] : args, new.target);
  };
  defineProperty(HermeticDate, 'length', { value: 7 });
  defineProperty(HermeticDate, 'prototype', { value: NativeDate.prototype, writable: false, enumerable: false, configurable: false });
  defineProperty(HermeticDate, 'now', { value: function now() { return epochMs; }, writable: true, configurable: true });
  defineProperty(HermeticDate, 'parse', { value: NativeDate.parse, writable: true, configurable: true });
  defineProperty(HermeticDate, 'UTC', { value: NativeDate.UTC, writable: true, configurable: true });

  // Intl reads the current time when DateTimeFormat formats `undefined`.
  const DTF = typeof Intl === 'object' ? Intl.DateTimeFormat.prototype : null;
  const dtfFormat = DTF === null ? undefined : getOwnPropertyDescriptor(DTF, 'format');
  const dtfParts = DTF === null ? undefined : getOwnPropertyDescriptor(DTF, 'formatToParts');

  // Property patches for hermetic contexts: [object, key, hermetic descriptor or undefined
  // (absent)]. They go in at install (hermetic is the default); only a config task with
  // system access puts the originals back (changing globals costs V8 deoptimization work).
  // What cannot be deterministic is absent, so feature detection sees the truth.
  const patches = [
    [G, 'Date', { value: HermeticDate, writable: true, enumerable: false, configurable: true }],
    [NativeDate.prototype, 'constructor', { value: HermeticDate, writable: true, enumerable: false, configurable: true }],
    [Math, 'random', { value: seededRandom, writable: true, enumerable: false, configurable: true }],
    [G, 'WeakRef', undefined],
    [G, 'Temporal', undefined],
  ];
  if (dtfFormat !== undefined) {
    const get = dtfFormat.get;
    const bound = new NativeWeakMap(); // as V8's: one bound format per DateTimeFormat
    append(patches, patches.length, [DTF, 'format', { get: function format() {
      const f = apply(get, this, []);
      let g = wmGet(bound, f);
      if (g === undefined) {
        g = (date) => f(date === undefined ? epochMs : date);
        defineProperty(g, 'name', { value: '' });
        wmSet(bound, f, g);
      }
      return g;
    }, enumerable: false, configurable: true }]);
  }
  if (dtfParts !== undefined) {
    const parts = dtfParts.value;
    append(patches, patches.length, [DTF, 'formatToParts', { value: function formatToParts(date) {
      return apply(parts, this, [date === undefined ? epochMs : date]);
    }, writable: true, enumerable: false, configurable: true }]);
  }
  const originals = patches.map(([o, key]) => getOwnPropertyDescriptor(o, key));
  const originalRandom = Math.random;
  const applyPatches = (which) => {
    for (let i = 0; i < patches.length; i++) {
      const [o, key] = patches[i];
      const d = which === 'hermetic' ? patches[i][2] : originals[i];
      const now = getOwnPropertyDescriptor(o, key);
      // mini-racer declares its timer globals with `var` (not deletable): undefined there.
      if (d === undefined) { if (now !== undefined && !now.configurable) o[key] = undefined; else delete o[key]; }
      else if (now !== undefined && !now.configurable) o[key] = d.value;
      else defineProperty(o, key, d);
    }
  };

  // Timers: Python fires each in its own eval, the one due first first. Under system
  // access they wait for the real clock. In a hermetic context they are virtual: due on
  // the task's clock, reported to Python as already due (so nothing waits), and firing one
  // moves the virtual clock to its due time. Order and Date.now() are deterministic; a
  // task that sleeps a minute takes no time and sees its clock a minute later.
  const VIRTUAL_BIAS = 1e16; // hermetic due times minus this are in the past, in order
  function addTimer(fn, delay, args, repeat) {
    if (typeof fn !== 'function') throw new NativeTypeError('The "callback" argument must be of type function');
    let ms = +delay;
    if (!(ms >= 1 && ms <= 2147483647)) ms = 1;
    const id = nextTimer++;
    const timer = { fn, args, due: now() + ms, every: repeat ? ms : 0 };
    mapSet(timers, id, timer);
    // Node's Timeout: code calls .unref() / .ref() on it, and +timeout is its id. A new
    // object literal (and new methods) per timer: nothing shared to write on.
    const handle = {
      ref() { return handle; },
      unref() { return handle; },
      hasRef() { return true; },
      refresh() { if (mapHas(timers, id)) timer.due = now() + ms; return handle; },
      close() { mapDelete(timers, id); return handle; },
      [Symbol.toPrimitive]() { return id; },
    };
    return handle;
  }
  function clearTimer(handle) {
    const id = handle !== null && typeof handle === 'object' ? safe(() => +handle, NaN) : handle;
    if (typeof id === 'number') mapDelete(timers, id);
  }
  const timerGlobals = [
    ['setTimeout', function setTimeout(fn, delay, ...args) { return addTimer(fn, delay, args, false); }],
    ['setInterval', function setInterval(fn, delay, ...args) { return addTimer(fn, delay, args, true); }],
    ['setImmediate', function setImmediate(fn, ...args) { return addTimer(fn, 0, args, false); }],
    ['clearTimeout', function clearTimeout(id) { clearTimer(id); }],
    ['clearInterval', function clearInterval(id) { clearTimer(id); }],
    ['clearImmediate', function clearImmediate(id) { clearTimer(id); }],
  ];

  function deepFreeze(v) {
    if (v !== null && typeof v === 'object') {
      const ks = keys(v);
      for (let i = 0; i < ks.length; i++) deepFreeze(v[ks[i]]);
      freeze(v);
    }
    return v;
  }

  // Globals made on first use in a task and kept for that task only (web.js, node.js):
  // an accessor on the global object, so a task that never reads one pays nothing, and
  // nothing a task reaches through one is shared with the next task.
  const taskValues = new NativeMap(); // name -> value made for the current task
  function cached(name, make) {
    if (mapHas(taskValues, name)) return mapGet(taskValues, name);
    const value = make();
    mapSet(taskValues, name, value);
    return value;
  }
  function lazyGlobal(name, make) {
    const get = function () { return cached('global:' + name, make); };
    const set = function (value) {
      defineProperty(this === undefined || this === null ? G : this, name, { value, writable: true, enumerable: false, configurable: true });
    };
    defineProperty(get, 'name', { value: 'get ' + name });
    defineProperty(set, 'name', { value: 'set ' + name });
    defineProperty(G, name, { get, set, enumerable: false, configurable: true });
  }
  const taskGlobal = (name) => G[name];

  // Kind-independent setup happens at install, off the request path (this also makes V8
  // compile these functions lazily there rather than during a task).
  setGlobal('__timer_manager', undefined);
  // Always absent: each could run JavaScript outside an eval Python started.
  for (const name of ['SharedArrayBuffer', 'FinalizationRegistry', 'Atomics', 'WebAssembly']) delete G[name];
  setGlobal('queueMicrotask', function queueMicrotask(fn) {
    if (typeof fn !== 'function') throw new NativeTypeError('The "callback" argument must be of type function');
    promiseThen(resolved(), () => fn());
  });
  setGlobal('console', makeConsole());
  setGlobal('global', G);
  for (let i = 0; i < timerGlobals.length; i++) setGlobal(timerGlobals[i][0], timerGlobals[i][1]);
  applyPatches('hermetic');

  function configure(t, cfgText) {
    checkToken(t);
    if (configured) throw new NativeError('already configured');
    configured = true;
    const cfg = parse(cfgText);
    const kind = '' + cfg.kind;
    hermetic = cfg.hermetic !== false;
    where = (hermetic ? 'a hermetic ' : 'a Zako ') + "'" + kind + "' context";
    maxLogBytes = cfg.maxLogBytes;
    maxLogLines = cfg.maxLogLines;
    maxResultBytes = cfg.maxResultBytes;
    // Read defensively: the worker passes them as epochMs/seed (or epoch_ms).
    const epoch = cfg.epochMs !== undefined ? cfg.epochMs : cfg.epoch_ms;
    epochMs = typeof epoch === 'number' && epoch === epoch && epoch >= -8.64e15 && epoch <= 8.64e15 ? epoch : DEFAULT_EPOCH_MS;
    seed = typeof cfg.seed === 'string' ? cfg.seed : '';
    timeOrigin = now();
    stream = null;
    entry = typeof cfg.entry === 'string' ? cfg.entry : 'main.js';
    if (hardenedFor !== null) {
      // Python only sends a hardened isolate tasks with the same key; refuse otherwise.
      if (hardenedFor !== hermetic) throw new NativeError('isolate hardened for another context');
    } else if (!hermetic) {
      applyPatches('system');
    }
    // taskId differs between otherwise identical tasks: a task that reads it gets an
    // outcome the action cache must not keep (DoneEvent.uncacheable).
    const taskId = cfg.taskId;
    const context = { kind };
    defineProperty(context, 'taskId', {
      get: () => { taskIdRead = true; return taskId; }, enumerable: true, configurable: false,
    });
    context.labels = deepFreeze(cfg.labels);
    context.systemAccess = !hermetic;
    contextObject = freeze(context);
    const log = (...args) => { emit('info', safe(() => format(args), '')); };
    coreModule = freeze({ version: cfg.version, log: freeze(log) });
    if (cfg.reuse === true && hardenedFor === null) harden(hermetic);
  }

  // ---- built-in modules ---------------------------------------------------------------
  // The loader asks isBuiltin(specifier) before resolving a path, and loadBuiltin for the
  // exports: 'zako:core', 'zako:context', and Node's built-in modules by both names
  // ('path' and 'node:path'), as require.resolve('node:path') answers in Node. Node's are
  // made on first require in a task and kept for that task only (node.js).
  let entry = 'main.js';
  const ZAKO_BUILTINS = freeze(['zako:core', 'zako:context']);
  const nodeName = (spec) => (typeof spec === 'string' && strStarts(spec, 'node:') ? strSlice(spec, 5) : spec);
  // Names only (protocol.NODE_BUILTINS, the list the server advertises): node.js itself is
  // compiled the first time a task needs a built-in.
  const NODE_BUILTINS = freeze(nodeBuiltins.slice());
  function isBuiltin(spec) {
    if (typeof spec !== 'string') return false;
    if (ZAKO_BUILTINS.indexOf(spec) >= 0) return true;
    return NODE_BUILTINS.indexOf(nodeName(spec)) >= 0;
  }
  function loadBuiltin(spec) {
    if (spec === 'zako:core') return coreModule;
    if (spec === 'zako:context') return contextObject;
    const name = nodeName(spec);
    if (typeof spec !== 'string' || NODE_BUILTINS.indexOf(name) < 0) {
      throw hostError(NativeError, "Cannot find module '" + spec + "'", 'module_not_found', 'MODULE_NOT_FOUND');
    }
    return cached('module:' + name, () => node().load(name));
  }

  // The npm packages vendor.py sends (CommonJS), compiled on first use in a task; their
  // frames are hidden from stack traces like the prelude's own. A require in them is
  // resolved when called, as Node would inside node_modules: a relative path as a file,
  // then .js, .json, /index.js; a Node built-in name (not 'x/') is the prelude's; another
  // bare name is a vendored package's main, or a file inside it.
  const vendorSources = new NativeMap(); // path -> wrapper function, compiled once
  const vendorLinks = new NativeMap(); // importer + '\n' + spec -> path ('' for a built-in)
  const vendorHas = (path) => hasOwnProperty(vendor.files, path);
  function vendorMissing(path, from) {
    return new NativeError('the runtime library ' + path + (from ? ' (required by ' + from + ')' : '') + ' is not installed (make setup)');
  }
  function vendorFile(path, from) {
    if (vendorHas(path)) return path;
    if (vendorHas(path + '.js')) return path + '.js';
    if (vendorHas(path + '.json')) return path + '.json';
    if (vendorHas(path + '/index.js')) return path + '/index.js';
    throw vendorMissing(path, from);
  }
  // Segments of `path` with '.', '..' and empty ones applied.
  function vendorNormalize(path) {
    const out = [];
    for (let start = 0; start <= path.length;) {
      let end = strIndexOf(path, '/', start);
      if (end < 0) end = path.length;
      const seg = strSlice(path, start, end);
      if (seg === '..') { if (out.length > 0) out.length -= 1; } else if (seg !== '' && seg !== '.') out[out.length] = seg;
      start = end + 1;
    }
    return out;
  }
  function vendorResolve(from, spec) {
    const key = from + '\n' + spec;
    let target = mapGet(vendorLinks, key);
    if (target !== undefined) return target;
    const dir = strSlice(from, 0, strLastIndexOf(from, '/') + 1);
    if (strStarts(spec, './') && strIndexOf(spec, '/.') < 0 && strSlice(spec, -1) !== '/') {
      target = vendorFile(dir + strSlice(spec, 2), from); // the common case, already normal
    } else if (spec === '.' || spec === '..' || strStarts(spec, './') || strStarts(spec, '../')) {
      target = vendorFile(arrJoin(vendorNormalize(dir + spec), '/'), from);
    } else if (isBuiltin(spec)) {
      target = '';
    } else {
      const parts = vendorNormalize(spec);
      const n = strStarts(spec, '@') ? 2 : 1;
      const name = n === 2 ? parts[0] + '/' + parts[1] : parts[0];
      if (!hasOwnProperty(vendor.mains, name)) throw vendorMissing(spec, from);
      target = parts.length > n ? vendorFile(arrJoin(parts, '/'), from) : vendor.mains[name];
    }
    mapSet(vendorLinks, key, target);
    return target;
  }
  function vendorModule(path) {
    return cached('vendor:' + path, () => {
      let fn = mapGet(vendorSources, path);
      if (fn === undefined) {
        if (!vendorHas(path)) throw vendorMissing(path);
        fn = strSlice(path, -5) === '.json' ? null
          : indirectEval('(function (exports, require, module, __filename, __dirname) {' + vendor.files[path] + '\n})\n//# sourceURL=zako:vendor/' + path);
        mapSet(vendorSources, path, fn);
      }
      if (fn === null) return { exports: parse(vendor.files[path]) };
      const module = { exports: {} };
      mapSet(taskValues, 'vendor:' + path, module); // cycles see partial exports, as in Node
      const require = (spec) => {
        const target = vendorResolve(path, '' + spec);
        return target === '' ? loadBuiltin(spec) : vendorModule(target);
      };
      try {
        apply(fn, module.exports, [module.exports, require, module, '/node_modules/' + path, '/node_modules/' + strSlice(path, 0, strLastIndexOf(path, '/'))]);
      } catch (e) {
        mapDelete(taskValues, 'vendor:' + path); // as Node: a module that threw is not cached
        throw e;
      }
      return module;
    }).exports;
  }

  const host = freeze({
    inspect: (v, options) => inspectValue(v, options),
    format: (args) => format(args),
    global: (name) => taskGlobal(name),
    cached,
    denied,
    builtin: (name) => loadBuiltin(name),
    vendor: (name) => vendorModule(vendor.mains[name]),
    now,
    timeOrigin: () => timeOrigin,
    setTimeout: (fn, ms) => addTimer(fn, ms, [], false),
    randomBytes,
    digest: (name, bytes) => (name === 'sha256' ? random().sha256(bytes) : name === 'sha1' ? random().sha1(bytes) : null),
    random: () => random(),
    warn: (text) => emit('warn', '' + text),
    write: (level, text) => emit(level, strSlice(text, -1) === '\n' ? strSlice(text, 0, -1) : text),
    entry: () => entry,
    v8Version: () => '',
    errorHeader,
    library: (name) => library(name),
    // node:module's createRequire: a require rooted at a file of the task's tree.
    createRequire: (where) => moduleSystem.createRequire(where),
    isBuiltin: (spec) => isBuiltin(spec) && !strStarts(spec, 'zako:'),
    builtinModules: () => NODE_BUILTINS.slice(),
  });
  const checkNames = (lib, name, names) => {
    if (arrJoin(lib.names.slice().sort(), ',') !== arrJoin(names.slice().sort(), ',')) {
      throw new NativeError(name + '.js and the prelude disagree on the names it provides');
    }
    return lib;
  };
  const web = () => library('web', (lib) => checkNames(lib, 'web', WEB_GLOBALS));
  const random = () => library('random');
  const node = () => library('node', (lib) => checkNames(lib, 'node', NODE_BUILTINS));
  const WEB_GLOBALS = freeze([
    'TextEncoder', 'TextDecoder', 'DOMException', 'atob', 'btoa', 'structuredClone', 'Event', 'EventTarget',
    'AbortController', 'AbortSignal', 'URL', 'URLSearchParams', 'crypto', 'performance',
  ]);
  for (let i = 0; i < WEB_GLOBALS.length; i++) lazyGlobal(WEB_GLOBALS[i], () => web().make(WEB_GLOBALS[i]));
  lazyGlobal('Buffer', () => loadBuiltin('buffer').Buffer);
  lazyGlobal('process', () => loadBuiltin('process'));

  // ---- reuse ------------------------------------------------------------------------
  function harden(hermetic) {
    compile('lockdown')([]); // compiled only here, once per isolate
    hardenedFor = hermetic;
    const ks = ownKeys(G);
    globals = new NativeMap();
    for (let i = 0; i < ks.length; i++) mapSet(globals, ks[i], getOwnPropertyDescriptor(G, ks[i]));
  }

  const sameDescriptor = (a, b) => a.configurable === b.configurable && a.enumerable === b.enumerable &&
    ('value' in a ? 'value' in b && is(a.value, b.value) && a.writable === b.writable
      : !('value' in b) && a.get === b.get && a.set === b.set);

  // Puts the global object back as hardening left it; '' when the isolate is fit for the
  // next task, else why not (Python then closes it).
  function restoreGlobals() {
    if (getPrototypeOf(G) !== globalProto) return 'the global object got a new prototype';
    if (!isExtensible(G)) return 'the global object was made non-extensible';
    // `globals` (built once, in harden) says which keys were there: a reset looks each
    // present key up once and counts them, rather than build and empty a map of them
    // all (two map operations per global, on every task).
    const present = ownKeys(G);
    let kept = 0;
    for (let i = 0; i < present.length; i++) {
      const key = present[i];
      const now = getOwnPropertyDescriptor(G, key);
      const before = mapGet(globals, key);
      if (before === undefined) {
        if (!now.configurable || !delete G[key]) return 'a global the task added cannot be removed';
        continue;
      }
      kept++;
      if (!sameDescriptor(now, before)) {
        if (!now.configurable) return 'a global the task changed cannot be restored';
        defineProperty(G, key, before);
      }
    }
    if (kept === mapSize(globals)) return '';
    let missing = ''; // the task deleted some: put them back
    mapForEach(globals, (d, key) => {
      if (missing !== '' || hasOwnProperty(G, key)) return;
      try { defineProperty(G, key, d); } catch (e) { missing = 'a global the task deleted cannot be restored'; }
    });
    return missing;
  }

  // Drops the last task's state and restores the globals: first thing in the next task's
  // eval (see `task`), or its own eval when Python reads or collects an idle warm isolate
  // (so the last task's module instances are garbage by then). Idempotent.
  function reset(t) {
    checkToken(t);
    moduleSystem.reset();
    taskIdRead = false;
    mapClear(timers);
    mapClear(taskValues);
    stream = null;
    logs = [];
    logCount = 0;
    logBytes = 0;
    logLines = 0;
    dropped = 0;
    indent = '';
    configured = false;
    started = false;
    outcome = null;
    contextObject = null;
    coreModule = null;
    compiling = null;
    where = 'a hermetic context';
    return hardenedFor === null ? 'the isolate is not hardened' : restoreGlobals();
  }

  // One eval for the common case: (reset,) configure, start, first report. `resetFirst`
  // is set on the first task a warm isolate runs after another: the previous task's
  // reset is deferred into this eval, as its first step (before anything of this task is
  // configured or run), which saves a round trip into V8 per task. A verdict other than
  // '' refuses the task untouched (`{"reset": verdict}`): Python closes the isolate and
  // runs the task in a fresh one. The previous task's leftover microtasks have all run
  // by then (V8 runs them after an eval returns, before the next eval starts), so they
  // cannot reach this task either: whatever they logged, scheduled or set is dropped here.
  // `modules` is the task's tree as [path, text] pairs and `prepared` the transform stage's answers
  // ([path, {esm, code, map, error}]); nothing is compiled until it is loaded (modules.js),
  // except the entry, compiled here first so that its syntax error propagates out of this
  // eval (its message carries the position) and `failedModule` says it was the entry.
  // `give` are texts the isolate lacks ([digest, text, keep]) and `drop` digests it must
  // forget (worker/sources.py); `modules` names each file's digest, and `tree` (or null)
  // the digest of the task's tree pack, whose files are the task's too.
  function task(t, cfgText, modules, prepared, entry, inputText, give, drop, tree, resetFirst) {
    if (resetFirst === true) {
      checkToken(t);
      let verdict;
      try { verdict = reset(t); } catch (e) { verdict = 'the reset threw'; }
      if (verdict !== '') return '{"reset":' + q('' + verdict) + '}';
    }
    configure(t, cfgText);
    moduleSystem.begin(modules, prepared, give, drop, hardenedFor !== null, tree);
    if (moduleSystem.isFile(entry) && !moduleSystem.transformed(entry)) {
      compiling = entry;
      moduleSystem.compile(entry);
    }
    compiling = null;
    start(t, entry, inputText);
    return poll(t);
  }
  // The entry's name when its compilation threw out of `task` (else null).
  function failedModule(t) { checkToken(t); return compiling; }

  // ---- modules ----------------------------------------------------------------------
  // Resolution, loading and the ESM/CJS interop live in modules.js; it reaches the
  // prelude only through this host.
  moduleSystem = makeModules(freeze({
    hostError,
    isBuiltin,
    loadBuiltin,
    deepFreeze,
    evalScript: (text) => indirectEval(text),
    locate: (e, at) => { wmSet(pinned, e, at); },
    compileFailed: (e, name) => {
      if (e !== null && typeof e === 'object') {
        wmSet(reasons, e, 'syntax_error');
        wmSet(pinned, e, { module: name, line: null, column: null });
      }
    },
  }));

  // ---- outcome ----------------------------------------------------------------------
  // Deepest result value serialized: JSON.stringify recurses, so a deeper value would
  // overflow the stack (a RangeError naming no limit) or the client's own JSON parser.
  const MAX_RESULT_DEPTH = 500;

  // Whatever the thrown value does (a Proxy whose traps throw, a getter that throws),
  // the task gets a failure: an exception out of here would leave it unsettled, which
  // the worker can only report as DEADLOCK.
  function describe(e) {
    try {
      return describeValue(e);
    } catch (_) {
      return failure('js_error', 'Error', 'the task threw a value that cannot be described ' +
        '(reading it threw)', null, undefined, null);
    }
  }

  function describeValue(e) {
    let name = 'Error';
    let message;
    let stack = null;
    let code = null;
    if (e !== null && (typeof e === 'object' || typeof e === 'function') &&
        (safe(() => toTag(e), '') === '[object Error]' || safe(() => e instanceof NativeError, false))) {
      stack = safe(() => { const s = e.stack; return typeof s === 'string' ? s : null; }, null);
      name = safe(() => { const n = e.name; return n === undefined ? 'Error' : '' + n; }, 'Error');
      message = safe(() => { const m = e.message; return m === undefined ? '' : '' + m; }, '');
      code = safe(() => { const c = e.code; return typeof c === 'string' || typeof c === 'number' ? '' + c : null; }, null);
    } else if (typeof e === 'string') {
      message = e;
    } else {
      message = safe(() => { const s = stringify(e); return s === undefined ? '' + e : s; }, null);
      if (message === null) message = safe(() => '' + e, '[unprintable value]');
    }
    const at = e !== null && (typeof e === 'object' || typeof e === 'function')
      ? wmGet(pinned, e) || wmGet(locations, e) : undefined;
    // Only errors the host made choose the reason (`reasons`): a task's own error with
    // code MODULE_NOT_FOUND is still the task's error, not a missing module.
    let reason = e !== null && typeof e === 'object' ? wmGet(reasons, e) : undefined;
    if (reason === undefined) reason = 'js_error';
    return failure(reason, name, message, stack, at, code);
  }

  function failure(reason, name, message, stack, at, code) {
    return '{"ok":false,"reason":' + q(reason) + ',"error":{"name":' + q(name) + ',"message":' + q(message) +
      ',"stack":' + (stack === null ? 'null' : q(stack)) +
      ',"module":' + (at === undefined ? 'null' : q(at.module)) +
      ',"line":' + (at === undefined ? 'null' : num(at.line)) +
      ',"column":' + (at === undefined ? 'null' : num(at.column)) +
      ',"code":' + (code === null || code === undefined ? 'null' : q(code)) + '}}';
  }

  function pathStep(base, key, holder) {
    if (isArray(holder)) return base + '[' + key + ']';
    return IDENT.test(key) ? base + '.' + key : base + '[' + q(key) + ']';
  }

  function serialize(value) {
    const paths = new NativeWeakMap();
    const depths = new NativeWeakMap();
    const problem = (what) => hostError(NativeTypeError, 'result is not JSON-serializable: ' + what, 'not_serializable');
    const text = stringify(value, function (key, v) {
      const parent = this !== null && typeof this === 'object' ? wmGet(paths, this) : undefined;
      const path = parent === undefined ? 'result' : pathStep(parent, key, this);
      if (v !== null && typeof v === 'object') {
        const depth = parent === undefined ? 1 : wmGet(depths, this) + 1;
        if (depth > MAX_RESULT_DEPTH) {
          throw hostError(NativeRangeError, 'result is nested deeper than ' + MAX_RESULT_DEPTH +
            ' levels of arrays and objects, the limit (at ' + strSlice(path, 0, 120) + '...)', 'not_serializable');
        }
        wmSet(depths, v, depth);
      }
      const t = typeof v;
      if (t === 'function') throw problem('a function at ' + path);
      if (t === 'symbol') throw problem('a symbol at ' + path);
      if (t === 'bigint') throw problem('a BigInt at ' + path);
      if (v !== null && t === 'object') {
        const earlier = wmGet(paths, v);
        if (earlier !== undefined && strStarts(path, earlier) &&
            (path.length === earlier.length || path[earlier.length] === '.' || path[earlier.length] === '[')) {
          throw problem('a cycle at ' + path + ' (back to ' + earlier + ')');
        }
        wmSet(paths, v, path);
      }
      return v;
    });
    return text === undefined ? 'null' : text;
  }

  function settleValue(value) {
    if (outcome !== null) return;
    let text;
    try {
      text = serialize(value);
    } catch (e) {
      outcome = describe(e);
      return;
    }
    if (text.length > maxResultBytes) {
      outcome = failure('result_too_large', 'RangeError', 'result is ' + utf8Length(text) +
        ' bytes of JSON, over the limit of ' + maxResultBytes + ' bytes', null, undefined, null);
      return;
    }
    outcome = '{"ok":true,"value":' + q(text) + '}';
  }
  function settleError(e) { if (outcome === null) outcome = describe(e); }

  function start(t, entry, inputText) {
    checkToken(t);
    if (started) throw new NativeError('already started');
    started = true;
    let input;
    try {
      input = inputText === '' ? null : parse(inputText);
    } catch (e) {
      outcome = failure('js_error', 'SyntaxError', 'task input is not valid JSON: ' + e.message, null, undefined, null);
      return;
    }
    try {
      const found = moduleSystem.entryExport(entry);
      if (found.promise !== undefined) { // an ES entry awaiting at top level
        promiseThen(found.promise, (exported) => {
          const result = typeof exported === 'function' ? apply(exported, undefined, [input, contextObject]) : exported;
          promiseThen(new NativePromise((res) => res(result)), settleValue, settleError);
        }, settleError);
        return;
      }
      const exported = found.value;
      const result = typeof exported === 'function' ? apply(exported, undefined, [input, contextObject]) : exported;
      if (result !== null && (typeof result === 'object' || typeof result === 'function') &&
          typeof result.then === 'function') {
        promiseThen(new NativePromise((res) => res(result)), settleValue, settleError);
      } else {
        settleValue(result);
      }
    } catch (e) {
      settleError(e);
    }
  }

  function fire(t, id) {
    checkToken(t);
    const timer = mapGet(timers, id);
    if (timer === undefined || outcome !== null) return;
    if (hermetic && timer.due > epochMs) epochMs = timer.due; // the virtual clock moves on
    if (timer.every > 0) timer.due = now() + timer.every; // setInterval: due again
    else mapDelete(timers, id);
    try { apply(timer.fn, undefined, timer.args); } catch (e) { settleError(e); } // uncaught: the task fails
  }

  function poll(t) {
    checkToken(t);
    let pending = '';
    if (outcome === null) {
      mapForEach(timers, (timer, id) => {
        pending += (pending === '' ? '' : ',') + '[' + num(id) + ',' + num(hermetic ? timer.due - VIRTUAL_BIAS : timer.due) + ']';
      });
    }
    const out = '{"outcome":' + (outcome === null ? 'null' : outcome) + ',"timers":[' + pending +
      '],"logs":[' + arrJoin(logs, ',') + '],"dropped":' + num(dropped) +
      ',"compiled":[' + arrJoin(moduleSystem.compileCounts(), ',') + '],"uncacheable":' +
      (taskIdRead ? 'true' : 'false') + '}';
    logs = [];
    logCount = 0;
    return out;
  }

  // Warm-up: run the common per-task code paths once on throwaway data, so that V8's lazy
  // compilation happens now, while the instance is a spare, not during a task.
  // Only what every task runs: failing and logging paths compile when first used.
  serialize({ a: [1, 'x', null, { b: true }] });
  deepFreeze({ a: {} });
  moduleSystem.resolve('a/b.js', 'zako:core');

  defineProperty(G, '__zako', {
    value: freeze({ fire, poll, task, failedModule, reset }),
    writable: false, enumerable: false, configurable: false,
  });

  // The worker's way into `task` (runtime.task_arguments, Evaluator.call): its ten
  // arguments as one JSON text, given as `this` (strict: a primitive string) or as the
  // first argument. A call compiles nothing, where an eval of `__zako.task(...)`
  // compiled new text every task. Returned to the installing eval only: no task code
  // ever holds it (and `task` checks the token anyway).
  return function run(text) {
    const a = parse(typeof text === 'string' ? text : this);
    return task(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
  };
})
