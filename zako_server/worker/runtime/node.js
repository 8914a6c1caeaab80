/*
 * The Node compatibility layer: `process`, `Buffer`, and Node's built-in modules.
 *
 * Pure-JavaScript npm packages where a well-kept one exists (vendored from
 * zako_server/jsdeps/node_modules by vendor.py, never copied into the repository):
 * buffer (feross/buffer, the Buffer of browserify and webpack), events (Node's own
 * EventEmitter, as browserify ships it), path-browserify (Node's posix path), string_decoder
 * (the Node streams working group's copy). The rest is small and written here: util,
 * querystring, url (over URL), timers, process, crypto (randomness and hashes); assert is
 * assert.js.
 *
 * Modules that need I/O or the host (fs, child_process, net, http, os, stream, ...) load,
 * so that code which only imports them works; every function they export throws a
 * CapabilityError naming the module and the context.
 *
 * As in web.js, everything is made on first use in a task and kept for that task only: a
 * task cannot leave state on a built-in module for the next task in a warm isolate.
 *
 * The result is a function taking (host) and returning { names, load, process }.
 */
(function zakoNode(host) {
  'use strict';
  const { defineProperty, freeze, keys, getPrototypeOf } = Object;
  const NativeError = Error;
  const NativeTypeError = TypeError;
  const tag = (v) => Object.prototype.toString.call(v);
  const NODE_VERSION = 'v22.12.0';

  // ---- denied modules ------------------------------------------------------------------
  const DENIED = {
    fs: 'access accessSync appendFile appendFileSync chmod chmodSync chown chownSync close closeSync copyFile copyFileSync cp cpSync createReadStream createWriteStream exists existsSync fstat fstatSync lstat lstatSync mkdir mkdirSync mkdtemp mkdtempSync open openSync opendir opendirSync read readFile readFileSync readSync readdir readdirSync readlink readlinkSync realpath realpathSync rename renameSync rm rmSync rmdir rmdirSync stat statSync symlink symlinkSync truncate truncateSync unlink unlinkSync unwatchFile utimes utimesSync watch watchFile write writeFile writeFileSync writeSync',
    'fs/promises': 'access appendFile chmod chown copyFile cp lstat mkdir mkdtemp open opendir readFile readdir readlink realpath rename rm rmdir stat symlink truncate unlink utimes watch writeFile',
    child_process: 'exec execFile execFileSync execSync fork spawn spawnSync',
    net: 'connect createConnection createServer isIP isIPv4 isIPv6 Server Socket',
    http: 'createServer get request Agent ClientRequest IncomingMessage Server ServerResponse',
    https: 'createServer get request Agent Server',
    http2: 'connect createServer createSecureServer',
    os: 'cpus freemem homedir hostname loadavg networkInterfaces release tmpdir totalmem uptime userInfo version',
    stream: 'Duplex PassThrough Readable Stream Transform Writable addAbortSignal finished pipeline',
    'stream/promises': 'finished pipeline',
    zlib: 'createDeflate createGunzip createGzip createInflate deflate deflateSync gunzip gunzipSync gzip gzipSync inflate inflateSync',
    crypto: 'createCipheriv createDecipheriv createHmac createSign createVerify generateKeyPair pbkdf2 pbkdf2Sync scrypt scryptSync',
    dns: 'lookup resolve resolve4 resolve6 reverse',
    dgram: 'createSocket',
    tls: 'connect createServer createSecureContext',
    readline: 'createInterface',
    tty: 'ReadStream WriteStream',
    vm: 'compileFunction createContext runInContext runInNewContext runInThisContext Script',
    worker_threads: 'Worker',
    cluster: 'fork setupPrimary',
    module: 'register syncBuiltinESMExports findSourceMap',
    v8: 'getHeapStatistics serialize deserialize',
    perf_hooks: 'monitorEventLoopDelay',
    async_hooks: 'createHook AsyncLocalStorage AsyncResource executionAsyncId',
    inspector: 'open close url',
  };
  // Pure values of denied modules that code reads at load time.
  const DENIED_VALUES = {
    // What `process` already says about the (fixed) platform, asked the os way; facts
    // about the real host (its name, CPUs, memory, users, directories) stay refused.
    os: () => ({
      EOL: '\n', devNull: '/dev/null', constants: freeze({ signals: freeze({}), errno: freeze({}) }),
      platform: () => 'linux', type: () => 'Linux', arch: () => 'x64', machine: () => 'x86_64', endianness: () => 'LE',
    }),
    fs: () => ({ constants: freeze({ F_OK: 0, R_OK: 4, W_OK: 2, X_OK: 1 }) }),
    perf_hooks: () => ({ performance: host.global('performance') }),
    crypto: makeCrypto,
    worker_threads: () => ({ isMainThread: true, parentPort: null, workerData: null, threadId: 0 }),
    // A task has no terminal: no descriptor is one, which is the true answer and needs no I/O.
    tty: () => ({ isatty: (fd) => false }),
    module: () => ({
      createRequire: (where) => host.createRequire(where),
      isBuiltin: (spec) => host.isBuiltin(spec),
      builtinModules: host.builtinModules(),
    }),
  };
  // node:crypto's randomness and hashing, from the same (seeded where hermetic) stream
  // and digests as the web crypto global; ciphers, HMAC and KDFs stay denied.
  function makeCrypto() {
    const webcrypto = host.global('crypto');
    const { Buffer } = host.builtin('buffer');
    const bytesOf = (b) => (ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b));
    const later = (fn, ...args) => queueMicrotask(() => fn(...args));
    const randomFillSync = (buf, offset = 0, size) => {
      const all = bytesOf(buf);
      host.randomBytes(all.subarray(offset, size === undefined ? all.length : offset + size));
      return buf;
    };
    const randomBytes = (n, cb) => {
      const b = host.randomBytes(Buffer.alloc(n));
      if (typeof cb === 'function') { later(cb, null, b); return undefined; }
      return b;
    };
    const randomInt = (min, max, cb) => {
      if (max === undefined || typeof max === 'function') { cb = max; max = min; min = 0; }
      const range = max - min;
      if (!(range > 0 && range <= 2 ** 48)) throw new RangeError('The value of "max" is out of range');
      const limit = 2 ** 48 - (2 ** 48 % range);
      let x;
      do { const b = host.randomBytes(new Uint8Array(6)); x = b.reduce((a, v) => a * 256 + v, 0); } while (x >= limit);
      const n = min + (x % range);
      if (typeof cb === 'function') { later(cb, null, n); return undefined; }
      return n;
    };
    const createHash = (algorithm) => {
      const name = ('' + algorithm).toLowerCase().replace('-', '');
      if (!host.digest(name, new Uint8Array(0))) {
        throw host.denied("crypto.createHash('" + algorithm + "') (Zako has sha1 and sha256)")();
      }
      const chunks = [];
      const hash = {
        update(data, encoding) { chunks.push(typeof data === 'string' ? Buffer.from(data, encoding) : Buffer.from(bytesOf(data))); return hash; },
        digest(encoding) {
          const out = Buffer.from(host.digest(name, Buffer.concat(chunks)));
          return encoding === undefined || encoding === 'buffer' ? out : out.toString(encoding);
        },
        copy() { const h = createHash(algorithm); for (const c of chunks) h.update(c); return h; },
      };
      return hash;
    };
    return { webcrypto, subtle: webcrypto.subtle, getRandomValues: (a) => webcrypto.getRandomValues(a),
      randomUUID: () => webcrypto.randomUUID(), randomFillSync, randomFill: (buf, ...rest) => {
        const cb = rest.pop(); later(cb, null, randomFillSync(buf, ...rest));
      }, randomBytes, randomInt, createHash, getHashes: () => ['sha1', 'sha256'] };
  }

  function deniedModule(name) {
    const exports = {};
    const names = DENIED[name].split(' ');
    for (let i = 0; i < names.length; i++) exports[names[i]] = host.denied(name + '.' + names[i]);
    const values = DENIED_VALUES[name];
    if (values !== undefined) Object.assign(exports, values());
    if (name === 'fs') exports.promises = host.builtin('fs/promises');
    return exports;
  }

  // ---- util -----------------------------------------------------------------------------
  const custom = Symbol.for('nodejs.util.inspect.custom');
  const promisifyCustom = Symbol.for('nodejs.util.promisify.custom');
  const TYPED = /^\[object (?:Big)?(?:Int|Uint|Float)(?:8|16|32|64)(?:Clamped)?Array\]$/;
  function makeTypes() {
    const is = (t) => (v) => tag(v) === t;
    const fnSource = (v) => { try { return Function.prototype.toString.call(v); } catch (e) { return ''; } };
    return {
      isDate: is('[object Date]'), isRegExp: is('[object RegExp]'), isMap: is('[object Map]'), isSet: is('[object Set]'),
      isWeakMap: is('[object WeakMap]'), isWeakSet: is('[object WeakSet]'), isPromise: is('[object Promise]'),
      isArrayBuffer: is('[object ArrayBuffer]'), isAnyArrayBuffer: is('[object ArrayBuffer]'), isDataView: is('[object DataView]'),
      isUint8Array: is('[object Uint8Array]'), isTypedArray: (v) => TYPED.test(tag(v)), isArrayBufferView: (v) => ArrayBuffer.isView(v),
      isNativeError: (v) => tag(v) === '[object Error]', isArgumentsObject: is('[object Arguments]'),
      isGeneratorFunction: (v) => typeof v === 'function' && /^(?:async\s*)?function\s*\*/.test(fnSource(v)),
      isAsyncFunction: (v) => typeof v === 'function' && tag(v) === '[object AsyncFunction]',
      isGeneratorObject: is('[object Generator]'), isMapIterator: is('[object Map Iterator]'), isSetIterator: is('[object Set Iterator]'),
      isBoxedPrimitive: (v) => v !== null && typeof v === 'object' && /^\[object (?:Number|String|Boolean|BigInt|Symbol)\]$/.test(tag(v)),
      isSymbolObject: (v) => v !== null && typeof v === 'object' && tag(v) === '[object Symbol]',
    };
  }

  function makeUtil() {
    const inspect = (v, options) => host.inspect(v, options);
    inspect.custom = custom;
    inspect.defaultOptions = { depth: 2 };
    const promisify = (fn) => {
      if (typeof fn !== 'function') throw new NativeTypeError('The "original" argument must be of type function');
      if (typeof fn[promisifyCustom] === 'function') return fn[promisifyCustom];
      const wrapped = function (...args) {
        return new Promise((resolve, reject) => {
          fn.call(this, ...args, (err, ...values) => (err ? reject(err) : resolve(values.length > 1 ? values : values[0])));
        });
      };
      Object.setPrototypeOf(wrapped, getPrototypeOf(fn));
      return Object.defineProperties(wrapped, Object.getOwnPropertyDescriptors(fn));
    };
    promisify.custom = promisifyCustom;
    const warned = new Set();
    const util = {
      format: (...args) => host.format(args),
      formatWithOptions: (options, ...args) => host.format(args),
      inspect,
      promisify,
      callbackify: (fn) => function (...args) {
        const cb = args.pop();
        fn.apply(this, args).then((v) => cb(null, v), (e) => cb(e || new NativeError('Promise was rejected with a falsy value')));
      },
      inherits: (ctor, superCtor) => {
        defineProperty(ctor, 'super_', { value: superCtor, writable: true, configurable: true });
        Object.setPrototypeOf(ctor.prototype, superCtor.prototype);
      },
      deprecate: (fn, message, code) => function (...args) {
        if (!warned.has(message)) { warned.add(message); host.warn('DeprecationWarning: ' + message + (code ? ' [' + code + ']' : '')); }
        return new.target ? Reflect.construct(fn, args, new.target) : fn.apply(this, args);
      },
      debuglog: () => { const f = () => {}; f.enabled = false; return f; },
      isDeepStrictEqual: (a, b) => host.library('assert').deepEqual(a, b, true),
      types: host.builtin('util/types'),
      isArray: Array.isArray,
      stripVTControlCharacters: (s) => ('' + s).replace(/\u001b\[[0-9;]*[A-Za-z]/g, ''),
      toUSVString: (s) => ('' + s).toWellFormed(),
      TextEncoder: host.global('TextEncoder'),
      TextDecoder: host.global('TextDecoder'),
    };
    util.debug = util.debuglog;
    return util;
  }

  // ---- querystring and url --------------------------------------------------------------
  function makeQuerystring() {
    // As Node: what is a valid escape is decoded even when the rest is not.
    const unescape = (s) => {
      try { return decodeURIComponent(s); } catch (e) {
        return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (m) => { try { return decodeURIComponent(m); } catch (x) { return m; } });
      }
    };
    const escape = (s) => encodeURIComponent(s);
    const value = (v) => (typeof v === 'string' ? v : (typeof v === 'number' && isFinite(v)) || typeof v === 'bigint' || typeof v === 'boolean' ? '' + v : '');
    const parse = (str, sep = '&', eq = '=', options = {}) => {
      const out = { __proto__: null };
      if (typeof str !== 'string' || str.length === 0) return out;
      const maxKeys = options && typeof options.maxKeys === 'number' ? options.maxKeys : 1000;
      const decode = options && typeof options.decodeURIComponent === 'function' ? options.decodeURIComponent : unescape;
      let parts = str.split(sep);
      if (maxKeys > 0) parts = parts.slice(0, maxKeys);
      for (const part of parts) {
        if (part === '') continue;
        const i = part.indexOf(eq);
        const k = decode((i >= 0 ? part.slice(0, i) : part).replace(/\+/g, ' '));
        const v = decode((i >= 0 ? part.slice(i + eq.length) : '').replace(/\+/g, ' '));
        if (!(k in out)) out[k] = v; else if (Array.isArray(out[k])) out[k].push(v); else out[k] = [out[k], v];
      }
      return out;
    };
    const stringify = (obj, sep = '&', eq = '=', options = {}) => {
      const enc = options && typeof options.encodeURIComponent === 'function' ? options.encodeURIComponent : escape;
      if (obj === null || typeof obj !== 'object') return '';
      const parts = [];
      for (const k of keys(obj)) {
        const v = obj[k];
        if (Array.isArray(v)) for (const x of v) parts.push(enc(k) + eq + enc(value(x)));
        else parts.push(enc(k) + eq + enc(value(v)));
      }
      return parts.join(sep);
    };
    return { parse, stringify, decode: parse, encode: stringify, escape, unescape };
  }

  function makeUrl() {
    const URL = host.global('URL');
    const fileURLToPath = (u) => {
      const url = typeof u === 'string' ? new URL(u) : u;
      if (url.protocol !== 'file:') throw new NativeTypeError('The URL must be of scheme file');
      return decodeURIComponent(url.pathname);
    };
    const pathToFileURL = (p) => new URL('file://' + encodeURI(host.builtin('path').resolve(p)).replace(/[?#]/g, encodeURIComponent));
    const LEGACY = /^(?:([a-z][a-z0-9+.-]*:))?(?:(\/\/)(?:([^@/?#]*)@)?([^/?#:]*)(?::(\d*))?)?([^?#]*)(\?[^#]*)?(#.*)?$/i;
    const parse = (s, parseQuery) => {
      const m = LEGACY.exec(('' + s).trim()) || [];
      const search = m[7] || null;
      const hostname = m[4] === undefined ? null : m[4].toLowerCase();
      const port = m[5] || null;
      const pathname = m[6] || (m[2] ? '/' : null);
      const query = search === null ? (parseQuery ? {} : null) : parseQuery ? host.builtin('querystring').parse(search.slice(1)) : search.slice(1);
      const protocol = m[1] ? m[1].toLowerCase() : null;
      return {
        protocol, slashes: m[2] ? true : null, auth: m[3] === undefined ? null : decodeURIComponent(m[3]),
        host: hostname === null ? null : hostname + (port ? ':' + port : ''), port, hostname,
        hash: m[8] || null, search, query, pathname, path: pathname === null && search === null ? null : (pathname || '') + (search || ''),
        href: (protocol || '') + (m[2] ? '//' : '') + (m[3] !== undefined ? m[3] + '@' : '') + (hostname === null ? '' : hostname + (port ? ':' + port : '')) + (pathname || '') + (search || '') + (m[8] || ''),
      };
    };
    const format = (u) => {
      if (typeof u === 'string') return u;
      if (u instanceof URL) return u.href;
      const search = u.search || (u.query && typeof u.query === 'object' ? '?' + host.builtin('querystring').stringify(u.query) : u.query ? '?' + u.query : '');
      const h = u.host || (u.hostname ? u.hostname + (u.port ? ':' + u.port : '') : '');
      return (u.protocol ? u.protocol + (u.protocol.endsWith(':') ? '' : ':') : '') + (u.slashes || h ? '//' : '') +
        (u.auth ? u.auth + '@' : '') + h + (u.pathname || '') + (search === '?' ? '' : search) + (u.hash || '');
    };
    const resolve = (from, to) => {
      const base = new URL(from, 'resolve://');
      const out = new URL(to, base);
      return out.protocol === 'resolve:' ? out.href.slice(10 + (('' + from).startsWith('/') ? 0 : 1)) : out.href;
    };
    return { URL, URLSearchParams: host.global('URLSearchParams'), fileURLToPath, pathToFileURL, parse, format, resolve };
  }

  // ---- process --------------------------------------------------------------------------
  function makeProcess() {
    const listeners = () => process;
    const entry = host.entry();
    const process = {
      title: 'node', version: NODE_VERSION, versions: { node: NODE_VERSION.slice(1), v8: host.v8Version() },
      release: { name: 'node' }, platform: 'linux', arch: 'x64', pid: 1, ppid: 0, execPath: '/usr/local/bin/node',
      argv: ['/usr/local/bin/node', '/' + entry], argv0: 'node', execArgv: [], env: {}, exitCode: undefined,
      cwd: () => '/', chdir: host.denied('process.chdir'), exit: host.denied('process.exit'), abort: host.denied('process.abort'),
      kill: host.denied('process.kill'), umask: () => 0o22, uptime: () => 0,
      nextTick: (fn, ...args) => {
        if (typeof fn !== 'function') throw new NativeTypeError('The "callback" argument must be of type function');
        queueMicrotask(() => fn(...args));
      },
      hrtime: (prev) => {
        const ms = host.now();
        const s = Math.floor(ms / 1000);
        const ns = Math.round((ms - s * 1000) * 1e6);
        return prev ? [s - prev[0] - (ns < prev[1] ? 1 : 0), (ns - prev[1] + 1e9) % 1e9] : [s, ns];
      },
      memoryUsage: host.denied('process.memoryUsage'), cpuUsage: host.denied('process.cpuUsage'),
      emitWarning: (w) => host.warn(typeof w === 'string' ? 'Warning: ' + w : '' + w),
      on: listeners, once: listeners, off: listeners, addListener: listeners, removeListener: listeners,
      removeAllListeners: listeners, prependListener: listeners, emit: () => false, listeners: () => [], listenerCount: () => 0,
      stdout: { isTTY: false, write: (s) => { host.write('info', '' + s); return true; } },
      stderr: { isTTY: false, write: (s) => { host.write('error', '' + s); return true; } },
      features: {},
    };
    process.hrtime.bigint = () => BigInt(Math.round(host.now() * 1e6));
    return process;
  }

  function vendored(name, pick) {
    return () => { const m = host.vendor(name); return pick ? pick(m) : m; };
  }

  const MAKERS = {
    assert: () => host.library('assert').makeAssert(false),
    'assert/strict': () => host.library('assert').makeAssert(true),
    buffer: vendored('buffer', (m) => {
      // Node's wording for a long buffer (feross/buffer prints a bare '...').
      defineProperty(m.Buffer.prototype, Symbol.for('nodejs.util.inspect.custom'), {
        value: function inspect() {
          const max = m.INSPECT_MAX_BYTES;
          const hex = this.toString('hex', 0, max).replace(/(.{2})/g, '$1 ').trim();
          const rest = this.length - max;
          return '<Buffer ' + hex + (rest > 0 ? ' ... ' + rest + ' more byte' + (rest > 1 ? 's' : '') : '') + '>';
        },
        writable: true, configurable: true,
      });
      return m;
    }),
    events: vendored('events', (EventEmitter) => { EventEmitter.EventEmitter = EventEmitter; return EventEmitter; }),
    path: vendored('path-browserify', (path) => { path.posix = path; return path; }),
    'path/posix': () => host.builtin('path'),
    querystring: makeQuerystring,
    string_decoder: vendored('string_decoder'),
    url: makeUrl,
    util: makeUtil,
    'util/types': makeTypes,
    timers: () => {
      const out = {};
      for (const n of ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate']) {
        out[n] = typeof globalThis[n] === 'function' ? globalThis[n] : host.denied(n);
      }
      return out;
    },
    process: makeProcess,
  };
  for (const name of keys(DENIED)) MAKERS[name] = () => deniedModule(name);

  return freeze({
    names: freeze(keys(MAKERS)),
    load: (name) => MAKERS[name](),
    process: makeProcess,
  });
})
