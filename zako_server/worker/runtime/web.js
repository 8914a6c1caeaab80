/*
 * The web platform globals every context has (the WinterCG minimum common API that makes
 * sense without I/O): TextEncoder/TextDecoder, atob/btoa, structuredClone, Event,
 * EventTarget, AbortController/AbortSignal, DOMException, crypto, performance, URL and
 * URLSearchParams. Hand-written, except URL and URLSearchParams, which are whatwg-url
 * (jsdom's reference implementation of the URL standard) loaded from the vendored npm tree.
 *
 * Why factories: the prelude calls `make(name)` the first time a task reads the global and
 * keeps the value for that task only, so nothing here is compiled for a task that does not
 * use it, and no object a task can reach outlives the task (a warm isolate's next task gets
 * new classes). The hashes and the random stream are random.js's, shared with the prelude.
 *
 * The result is a function taking (host) and returning { make, names }.
 */
(function zakoWeb(host) {
  'use strict';
  const { defineProperty, freeze } = Object;
  const NativeError = Error;
  const NativeTypeError = TypeError;
  const NativeRangeError = RangeError;
  const U8 = Uint8Array;
  const isView = ArrayBuffer.isView;
  const fromCharCode = String.fromCharCode;

  // ---- text ---------------------------------------------------------------------------
  const utf8Encode = (s) => host.random().utf8Encode(s);

  // Decodes bytes[from..] as UTF-8 with WHATWG replacement; returns [text, bytes consumed]
  // (an incomplete sequence at the end is left unconsumed when `stream`).
  function utf8Decode(b, fatal, stream) {
    let out = '';
    let chunk = [];
    let i = 0;
    const bad = () => { if (fatal) throw new NativeTypeError('The encoded data was not valid for encoding utf-8'); chunk.push(0xfffd); };
    while (i < b.length) {
      const c = b[i];
      let need = 0, cp = 0, lo = 0x80, hi = 0xbf;
      if (c < 0x80) { chunk.push(c); i++; } else {
        if (c >= 0xc2 && c <= 0xdf) { need = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { need = 2; cp = c & 0xf; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { need = 3; cp = c & 7; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
        else { bad(); i++; continue; }
        let j = 1;
        for (; j <= need; j++) {
          if (i + j >= b.length) break;
          const d = b[i + j];
          if (d < (j === 1 ? lo : 0x80) || d > (j === 1 ? hi : 0xbf)) break;
          cp = (cp << 6) | (d & 63);
        }
        if (j <= need) {
          if (i + j >= b.length && stream) break;
          bad(); i += j; continue;
        }
        i += need + 1;
        if (cp >= 0x10000) { cp -= 0x10000; chunk.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)); } else chunk.push(cp);
      }
      if (chunk.length > 8000) { out += fromCharCode.apply(null, chunk); chunk = []; }
    }
    return [out + fromCharCode.apply(null, chunk), i];
  }

  const bytesOf = (input, what) => {
    if (input instanceof ArrayBuffer) return new U8(input);
    if (isView(input)) return new U8(input.buffer, input.byteOffset, input.byteLength);
    throw new NativeTypeError('The "' + what + '" argument must be an ArrayBuffer or ArrayBufferView');
  };


  // ---- base64 -------------------------------------------------------------------------
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  function base64Encode(b) {
    let out = '';
    for (let i = 0; i < b.length; i += 3) {
      const n = (b[i] << 16) | ((b[i + 1] || 0) << 8) | (b[i + 2] || 0);
      out += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < b.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < b.length ? B64[n & 63] : '=');
    }
    return out;
  }
  function base64Decode(s) {
    let out = '';
    let bits = 0, acc = 0;
    for (let i = 0; i < s.length; i++) {
      acc = (acc << 6) | B64.indexOf(s[i]);
      bits += 6;
      if (bits >= 8) { bits -= 8; out += fromCharCode((acc >> bits) & 255); }
    }
    return out;
  }

  // ---- events -------------------------------------------------------------------------
  function makeEvents() {
    const DOMException = host.global('DOMException');
    class Event {
      #type; #bubbles; #cancelable; #composed; #canceled = false; #target = null; #stop = false; #time;
      constructor(type, init = {}) {
        if (arguments.length === 0) throw new NativeTypeError('The "type" argument must be specified');
        this.#type = '' + type;
        this.#bubbles = !!(init && init.bubbles);
        this.#cancelable = !!(init && init.cancelable);
        this.#composed = !!(init && init.composed);
        this.#time = host.now();
      }
      get type() { return this.#type; }
      get bubbles() { return this.#bubbles; }
      get cancelable() { return this.#cancelable; }
      get composed() { return this.#composed; }
      get defaultPrevented() { return this.#canceled; }
      get target() { return this.#target; }
      get currentTarget() { return this.#target; }
      get timeStamp() { return this.#time; }
      get eventPhase() { return this.#target === null ? 0 : 2; }
      get isTrusted() { return false; }
      preventDefault() { if (this.#cancelable) this.#canceled = true; }
      stopPropagation() {}
      stopImmediatePropagation() { this.#stop = true; }
      composedPath() { return this.#target === null ? [] : [this.#target]; }
      static dispatching(event, target) { event.#target = target; event.#stop = false; }
      static stopped(event) { return event.#stop; }
    }
    const dispatching = Event.dispatching;
    const stopped = Event.stopped;
    delete Event.dispatching;
    delete Event.stopped;
    class EventTarget {
      #listeners = new Map();
      addEventListener(type, listener, options) {
        if (listener === null || listener === undefined) return;
        const once = typeof options === 'object' && options !== null && !!options.once;
        const capture = typeof options === 'boolean' ? options : !!(options && options.capture);
        const signal = typeof options === 'object' && options !== null ? options.signal : undefined;
        if (signal && signal.aborted) return;
        let list = this.#listeners.get('' + type);
        if (list === undefined) { list = []; this.#listeners.set('' + type, list); }
        if (list.some((l) => l.listener === listener && l.capture === capture)) return;
        const entry = { listener, capture, once };
        list.push(entry);
        if (signal) signal.addEventListener('abort', () => this.removeEventListener(type, listener, { capture }));
      }
      removeEventListener(type, listener, options) {
        const capture = typeof options === 'boolean' ? options : !!(options && options.capture);
        const list = this.#listeners.get('' + type);
        if (list === undefined) return;
        const i = list.findIndex((l) => l.listener === listener && l.capture === capture);
        if (i >= 0) list.splice(i, 1);
      }
      dispatchEvent(event) {
        if (!(event instanceof Event)) throw new NativeTypeError('The "event" argument must be an instance of Event');
        dispatching(event, this);
        const list = this.#listeners.get(event.type);
        if (list !== undefined) {
          for (const entry of list.slice()) {
            if (entry.once) this.removeEventListener(event.type, entry.listener, { capture: entry.capture });
            const l = entry.listener;
            if (typeof l === 'function') l.call(this, event); else if (l && typeof l.handleEvent === 'function') l.handleEvent(event);
            if (stopped(event)) break;
          }
        }
        const handler = this['on' + event.type];
        if (typeof handler === 'function') handler.call(this, event);
        return !event.defaultPrevented;
      }
    }
    const ABORT = Symbol('abort');
    class AbortSignal extends EventTarget {
      #aborted = false; #reason = undefined;
      constructor(key) { if (key !== ABORT) throw new NativeTypeError('Illegal constructor'); super(); this.onabort = null; }
      get aborted() { return this.#aborted; }
      get reason() { return this.#reason; }
      throwIfAborted() { if (this.#aborted) throw this.#reason; }
      static abort(reason) { const s = new AbortSignal(ABORT); signal(s, reason); return s; }
      static timeout(ms) {
        const s = new AbortSignal(ABORT);
        host.setTimeout(() => signal(s, new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
        return s;
      }
      static any(signals) {
        const s = new AbortSignal(ABORT);
        for (const o of signals) {
          if (o.aborted) { signal(s, o.reason); break; }
          o.addEventListener('abort', () => signal(s, o.reason), { once: true });
        }
        return s;
      }
      static signal(s, reason) {
        if (s.#aborted) return;
        s.#aborted = true;
        s.#reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
        s.dispatchEvent(new Event('abort'));
      }
    }
    const signal = AbortSignal.signal;
    delete AbortSignal.signal;
    class AbortController {
      #signal = new AbortSignal(ABORT);
      get signal() { return this.#signal; }
      abort(reason) { signal(this.#signal, reason); }
    }
    return { Event, EventTarget, AbortSignal, AbortController };
  }

  // ---- structuredClone ----------------------------------------------------------------
  const tag = (v) => Object.prototype.toString.call(v);
  function clone(value, options) {
    const DOMException = host.global('DOMException');
    if (options !== undefined && options !== null && options.transfer !== undefined && options.transfer.length) {
      throw new DOMException('Transferring objects is not supported', 'DataCloneError');
    }
    const memory = new Map();
    const fail = (what) => { throw new DOMException(what + ' could not be cloned.', 'DataCloneError'); };
    const walk = (v) => {
      if (typeof v === 'function') fail(host.inspect(v));
      if (typeof v === 'symbol') fail(v.toString());
      if (v === null || typeof v !== 'object') return v;
      if (memory.has(v)) return memory.get(v);
      const t = tag(v);
      let out;
      const keep = (o) => { memory.set(v, o); return o; };
      switch (t) {
        case '[object Boolean]': case '[object Number]': case '[object String]': case '[object BigInt]':
          return keep(Object(v.valueOf()));
        case '[object Date]': return keep(new Date(v.getTime()));
        case '[object RegExp]': return keep(new RegExp(v.source, v.flags));
        case '[object ArrayBuffer]': return keep(v.slice(0));
        case '[object Map]': out = keep(new Map()); for (const [k, x] of v) out.set(walk(k), walk(x)); return out;
        case '[object Set]': out = keep(new Set()); for (const x of v) out.add(walk(x)); return out;
        case '[object Error]': {
          const names = ['Error', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError'];
          const name = names.indexOf(v.name) >= 0 ? v.name : 'Error';
          out = keep(new globalThis[name](v.message));
          if ('stack' in v) defineProperty(out, 'stack', { value: v.stack, writable: true, configurable: true });
          if ('cause' in v) out.cause = walk(v.cause);
          return out;
        }
        default: break;
      }
      if (isView(v)) {
        const buffer = walk(v.buffer);
        const Ctor = v.constructor === DataView ? DataView : globalThis[t.slice(8, -1)];
        return keep(Ctor === DataView ? new DataView(buffer, v.byteOffset, v.byteLength) : new Ctor(buffer, v.byteOffset, v.length));
      }
      if (Array.isArray(v)) {
        out = keep(new Array(v.length));
        for (const k of Object.keys(v)) out[k] = walk(v[k]);
        return out;
      }
      if (t !== '[object Object]' && t !== '[object Arguments]') fail(t);
      out = keep({});
      for (const k of Object.keys(v)) out[k] = walk(v[k]);
      return out;
    };
    return walk(value);
  }

  // whatwg-url's classes, printing as Node's do under util.inspect and console.log.
  function makeUrl() {
    const { URL, URLSearchParams } = host.vendor('whatwg-url');
    const CUSTOM = Symbol.for('nodejs.util.inspect.custom');
    defineProperty(URL.prototype, CUSTOM, {
      value: function (depth, options, inspect) {
        const u = this;
        const shown = { href: u.href, origin: u.origin, protocol: u.protocol, username: u.username, password: u.password,
          host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname, search: u.search,
          searchParams: u.searchParams, hash: u.hash };
        return 'URL ' + inspect(shown, options);
      },
      writable: true, configurable: true,
    });
    defineProperty(URLSearchParams.prototype, CUSTOM, {
      value: function (depth, options, inspect) {
        const items = [];
        for (const [k, v] of this) items.push(inspect(k) + ' => ' + inspect(v));
        return items.length === 0 ? 'URLSearchParams {}' : 'URLSearchParams { ' + items.join(', ') + ' }';
      },
      writable: true, configurable: true,
    });
    return { URL, URLSearchParams };
  }

  const makers = {
    TextEncoder: () => class TextEncoder {
      get encoding() { return 'utf-8'; }
      encode(input = '') { return utf8Encode(input); }
      encodeInto(src, dest) {
        const bytes = utf8Encode(src);
        let n = Math.min(bytes.length, dest.length);
        while (n > 0 && n < bytes.length && (bytes[n] & 0xc0) === 0x80) n--;
        dest.set(bytes.subarray(0, n));
        return { read: utf8Decode(bytes.subarray(0, n), false, false)[0].length, written: n };
      }
    },
    TextDecoder: () => {
      const LABELS = ['utf-8', 'utf8', 'unicode-1-1-utf-8'];
      return class TextDecoder {
        #fatal; #ignoreBOM; #pending = new U8(0); #seenStart = false;
        constructor(label = 'utf-8', options = {}) {
          if (LABELS.indexOf(('' + label).trim().toLowerCase()) < 0) throw new NativeRangeError('The "' + label + '" encoding is not supported');
          this.#fatal = !!(options && options.fatal);
          this.#ignoreBOM = !!(options && options.ignoreBOM);
        }
        get encoding() { return 'utf-8'; }
        get fatal() { return this.#fatal; }
        get ignoreBOM() { return this.#ignoreBOM; }
        decode(input, options = {}) {
          const stream = !!(options && options.stream);
          let bytes = input === undefined ? new U8(0) : bytesOf(input, 'input');
          if (this.#pending.length) { const all = new U8(this.#pending.length + bytes.length); all.set(this.#pending); all.set(bytes, this.#pending.length); bytes = all; }
          let [text, used] = utf8Decode(bytes, this.#fatal, stream);
          this.#pending = stream ? bytes.slice(used) : new U8(0);
          if (!this.#seenStart && text.length && !this.#ignoreBOM && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
          this.#seenStart = stream && (this.#seenStart || text.length > 0);
          return text;
        }
      };
    },
    DOMException: () => {
      const CODES = { IndexSizeError: 1, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11, SyntaxError: 12,
        InvalidCharacterError: 5, TypeMismatchError: 17, SecurityError: 18, AbortError: 20, TimeoutError: 23,
        QuotaExceededError: 22, DataCloneError: 25 };
      return class DOMException extends NativeError {
        constructor(message = '', name = 'Error') {
          super(message);
          defineProperty(this, 'name', { value: '' + name, configurable: true, writable: true });
        }
        get code() { return CODES[this.name] || 0; }
      };
    },
    atob: () => function atob(data) {
      if (arguments.length === 0) throw new NativeTypeError('The "data" argument must be specified');
      let s = ('' + data).replace(/[\t\n\f\r ]/g, '');
      if (s.length % 4 === 0) s = s.replace(/==?$/, '');
      if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) throw new (host.global('DOMException'))('Invalid character', 'InvalidCharacterError');
      return base64Decode(s);
    },
    btoa: () => function btoa(data) {
      if (arguments.length === 0) throw new NativeTypeError('The "data" argument must be specified');
      const s = '' + data;
      const bytes = new U8(s.length);
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 255) throw new (host.global('DOMException'))('Invalid character', 'InvalidCharacterError');
        bytes[i] = c;
      }
      return base64Encode(bytes);
    },
    structuredClone: () => function structuredClone(value, options) {
      return clone(value, options);
    },
    Event: () => host.cached('events', makeEvents).Event,
    EventTarget: () => host.cached('events', makeEvents).EventTarget,
    AbortController: () => host.cached('events', makeEvents).AbortController,
    AbortSignal: () => host.cached('events', makeEvents).AbortSignal,
    URL: () => host.cached('url', makeUrl).URL,
    URLSearchParams: () => host.cached('url', makeUrl).URLSearchParams,
    crypto: () => {
      const DOMException = host.global('DOMException');
      const INTEGER = ['[object Int8Array]', '[object Uint8Array]', '[object Uint8ClampedArray]', '[object Int16Array]',
        '[object Uint16Array]', '[object Int32Array]', '[object Uint32Array]', '[object BigInt64Array]', '[object BigUint64Array]'];
      const getRandomValues = (array) => {
        if (!isView(array) || INTEGER.indexOf(Object.prototype.toString.call(array)) < 0) {
          throw new DOMException('The data argument must be an integer-type TypedArray', 'TypeMismatchError');
        }
        if (array.byteLength > 65536) throw new DOMException("The ArrayBufferView's byte length (" + array.byteLength + ') exceeds 65536', 'QuotaExceededError');
        host.randomBytes(new U8(array.buffer, array.byteOffset, array.byteLength));
        return array;
      };
      const hex = (b) => { let s = ''; for (let i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16); return s; };
      const randomUUID = () => {
        const b = host.randomBytes(new U8(16));
        b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
        const h = hex(b);
        return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
      };
      const DIGESTS = { 'SHA-1': host.random().sha1, 'SHA-256': host.random().sha256 };
      const subtle = {
        digest(algorithm, data) {
          return new Promise((resolve) => {
            const name = ('' + (typeof algorithm === 'object' && algorithm !== null ? algorithm.name : algorithm)).toUpperCase();
            const f = DIGESTS[name];
            if (f === undefined) throw new DOMException('Unrecognized algorithm name: ' + name + ' (Zako supports SHA-1 and SHA-256)', 'NotSupportedError');
            resolve(f(new U8(bytesOf(data, 'data'))).buffer);
          });
        },
      };
      return { getRandomValues, randomUUID, subtle };
    },
    performance: () => {
      const origin = host.timeOrigin();
      return {
        timeOrigin: origin,
        now: () => host.now() - origin,
        toJSON() { return { timeOrigin: origin }; },
      };
    },
  };

  function make(name) {
    const f = makers[name];
    return f === undefined ? undefined : f();
  }

  return freeze({ make, names: freeze(Object.keys(makers)) });
})
