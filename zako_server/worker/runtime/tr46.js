/*
 * Stands in for the npm package tr46 (UTS #46 IDNA mapping) under whatwg-url: its
 * mapping tables are ~200 KB that every V8 instance would carry for the rare host name
 * that is not ASCII. ASCII names are lower-cased and checked as tr46 does; other labels
 * are NFC-normalised, lower-cased and Punycode-encoded, without the full UTS #46 mapping
 * (so a name that needs it, such as one with a fullwidth dot, is not mapped as browsers do).
 */
'use strict';
const punycode = require('punycode/');

function toASCII(domain, options = {}) {
  const labels = String(domain).normalize('NFC').toLowerCase().split('.');
  const out = [];
  for (const label of labels) {
    let ascii = label;
    if (/[^\u0000-\u007f]/.test(label)) {
      try { ascii = 'xn--' + punycode.encode(label); } catch (e) { return null; }
    } else if (label.startsWith('xn--')) {
      try { punycode.decode(label.slice(4)); } catch (e) { if (!options.ignoreInvalidPunycode) return null; }
    }
    if (options.checkHyphens && (ascii.startsWith('-') || ascii.endsWith('-'))) return null;
    if (options.useSTD3ASCIIRules && /[^a-z0-9-]/.test(ascii)) return null;
    out.push(ascii);
  }
  const result = out.join('.');
  if (options.verifyDNSLength && (result.length > 253 || out.some((l) => l.length > 63 || l.length === 0))) return null;
  return result;
}

function toUnicode(domain) {
  const labels = String(domain).split('.').map((label) => {
    if (!label.toLowerCase().startsWith('xn--')) return label.toLowerCase();
    try { return punycode.decode(label.slice(4)); } catch (e) { return label; }
  });
  return { domain: labels.join('.'), error: false };
}

module.exports = { toASCII, toUnicode };
