/*
 * SHA-1, SHA-256 and a ChaCha20 keystream (RFC 8439), for the random stream and digests.
 *
 * Hermetic contexts draw Math.random, crypto.getRandomValues/randomUUID and node:crypto's
 * randomBytes from ChaCha20 keyed by SHA-256 of the task's seed: the same seed gives the
 * same bytes on every server, and ChaCha20's output says nothing usable about the key.
 * crypto.subtle.digest and crypto.createHash use the same digests. Kept apart from web.js
 * so that a task that only calls Math.random compiles this file alone (on first use).
 *
 * The result is a function (its argument, the prelude's host, is unused) returning
 * { sha256, sha1, chacha, utf8Encode }.
 */
(function zakoRandom() {
  'use strict';
  const U8 = Uint8Array;

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

  return Object.freeze({ sha256, sha1, chacha, utf8Encode });
})
