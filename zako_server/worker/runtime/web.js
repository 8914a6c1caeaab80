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
 * new classes). The crypto primitives (SHA-256, ChaCha20) are shared with the prelude: they
 * seed Math.random in hermetic contexts.
 *
 * The result is a function taking (host) and returning { make, sha256, chacha }.
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

  // ---- hashing and the PRNG ---------------------------------------------------------
  const K256 = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  // Message padding shared by SHA-1 and SHA-256: big-endian 32-bit words.
  function padWords(bytes) {
    const n = bytes.length;
    const total = ((n + 9 + 63) >> 6) << 4;
    const w = new Uint32Array(total);
    for (let i = 0; i < n; i++) w[i >> 2] |= bytes[i] << (24 - (i & 3) * 8);
    w[n >> 2] |= 0x80 << (24 - (n & 3) * 8);
    w[total - 2] = Math.floor(n / 0x20000000);
    w[total - 1] = (n * 8) >>> 0;
    return w;
  }
  const wordsOut = (h) => {
    const out = new U8(h.length * 4);
    for (let i = 0; i < h.length; i++) {
      out[i * 4] = h[i] >>> 24; out[i * 4 + 1] = h[i] >>> 16; out[i * 4 + 2] = h[i] >>> 8; out[i * 4 + 3] = h[i];
    }
    return out;
  };
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));

  function sha256(bytes) {
    const m = padWords(bytes);
    const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const w = new Uint32Array(64);
    for (let b = 0; b < m.length; b += 16) {
      for (let t = 0; t < 16; t++) w[t] = m[b + t];
      for (let t = 16; t < 64; t++) {
        const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
        const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
      }
      let [a, bb, c, d, e, f, g, hh] = h;
      for (let t = 0; t < 64; t++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[t] + w[t]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
        hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    return wordsOut(h);
  }

  function sha1(bytes) {
    const m = padWords(bytes);
    const h = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]);
    const w = new Uint32Array(80);
    for (let b = 0; b < m.length; b += 16) {
      for (let t = 0; t < 16; t++) w[t] = m[b + t];
      for (let t = 16; t < 80; t++) w[t] = rotr(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 31);
      let [a, bb, c, d, e] = h;
      for (let t = 0; t < 80; t++) {
        const f = t < 20 ? (bb & c) | (~bb & d) : t < 40 || t >= 60 ? bb ^ c ^ d : (bb & c) | (bb & d) | (c & d);
        const k = t < 20 ? 0x5a827999 : t < 40 ? 0x6ed9eba1 : t < 60 ? 0x8f1bbcdc : 0xca62c1d6;
        const tmp = (rotr(a, 27) + f + e + k + w[t]) | 0;
        e = d; d = c; c = rotr(bb, 2); bb = a; a = tmp;
      }
      h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e;
    }
    return wordsOut(h);
  }

  // ChaCha20 (RFC 8439) as a keystream: next() gives 32 random bits.
  function chacha(key) {
    const s = new Uint32Array(16);
    s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
    for (let i = 0; i < 8; i++) s[4 + i] = key[i * 4] | (key[i * 4 + 1] << 8) | (key[i * 4 + 2] << 16) | (key[i * 4 + 3] << 24);
    const x = new Uint32Array(16);
    let used = 16;
    const q = (a, b, c, d) => {
      x[a] += x[b]; x[d] = rotr(x[d] ^ x[a], 16); x[c] += x[d]; x[b] = rotr(x[b] ^ x[c], 20);
      x[a] += x[b]; x[d] = rotr(x[d] ^ x[a], 24); x[c] += x[d]; x[b] = rotr(x[b] ^ x[c], 25);
    };
    return () => {
      if (used === 16) {
        x.set(s);
        for (let r = 0; r < 10; r++) {
          q(0, 4, 8, 12); q(1, 5, 9, 13); q(2, 6, 10, 14); q(3, 7, 11, 15);
          q(0, 5, 10, 15); q(1, 6, 11, 12); q(2, 7, 8, 13); q(3, 4, 9, 14);
        }
        for (let i = 0; i < 16; i++) x[i] += s[i];
        s[12]++;
        if (s[12] === 0) s[13]++;
        used = 0;
      }
      return x[used++];
    };
  }

  // ---- text ---------------------------------------------------------------------------
  function utf8Encode(s) {
    s = '' + s;
    const out = new U8(s.length * 3);
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 0xd800 && c < 0xe000) {
        const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
        if (c < 0xdc00 && d >= 0xdc00 && d < 0xe000) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; } else c = 0xfffd;
      }
      if (c < 0x80) out[n++] = c;
      else if (c < 0x800) { out[n++] = 0xc0 | (c >> 6); out[n++] = 0x80 | (c & 63); }
      else if (c < 0x10000) { out[n++] = 0xe0 | (c >> 12); out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63); }
      else { out[n++] = 0xf0 | (c >> 18); out[n++] = 0x80 | ((c >> 12) & 63); out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63); }
    }
    return out.slice(0, n);
  }

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
    URL: () => host.vendor('whatwg-url').URL,
    URLSearchParams: () => host.vendor('whatwg-url').URLSearchParams,
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
      const DIGESTS = { 'SHA-1': sha1, 'SHA-256': sha256 };
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
      const origin = host.now();
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

  return freeze({ make, names: freeze(Object.keys(makers)), sha256, sha1, chacha, utf8Encode, utf8Decode, base64Encode });
})
