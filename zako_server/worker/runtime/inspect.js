/*
 * How values print: Node's util.inspect with its defaults (depth 2, compact 3, breakLength
 * 80) — the same line breaking, array grouping, quoting, circular markers — and
 * util.format's %s %d %i %f %j %o %O %c %%, so a task's log reads as it would under Node.
 * Used by console (prelude.js) and by the util module (node.js).
 *
 * It reads values through intrinsics captured when the isolate is made, before any task
 * code runs, and every read of task data is guarded: printing cannot be turned into a way
 * to run code in the host's name or to break the log.
 *
 * The result is a function taking (host) and returning
 * { show, showShallow, inspectValue, format }.
 */
(function zakoInspect(host) {
  'use strict';
  const errorHeader = host.errorHeader;
  const FP = Function.prototype;
  const uncurry = FP.bind.bind(FP.call);
  const { defineProperty, getOwnPropertyDescriptor, getPrototypeOf, keys, is } = Object;
  const toTag = uncurry(Object.prototype.toString);
  const fnSource = uncurry(FP.toString);
  const charCode = uncurry(String.prototype.charCodeAt);
  const strSlice = uncurry(String.prototype.slice);
  const strIndexOf = uncurry(String.prototype.indexOf);
  const strStarts = uncurry(String.prototype.startsWith);
  const padStart = uncurry(String.prototype.padStart);
  const padEnd = uncurry(String.prototype.padEnd);
  const repeat = uncurry(String.prototype.repeat);
  const arrJoin = uncurry(Array.prototype.join);
  const apply = Reflect.apply;
  const CUSTOM = Symbol.for('nodejs.util.inspect.custom');
  const ownNames = Object.getOwnPropertyNames;
  const arrConcat = uncurry(Array.prototype.concat);
  const arrIndexOf = uncurry(Array.prototype.indexOf);
  const regexTest = uncurry(RegExp.prototype.test);
  const isArray = Array.isArray;
  const isView = ArrayBuffer.isView;
  const stringify = JSON.stringify;
  const dateISO = uncurry(Date.prototype.toISOString);
  const NativeError = Error;
  const NativeMap = Map;
  const mapGet = uncurry(Map.prototype.get);
  const mapSet = uncurry(Map.prototype.set);
  const mapForEach = uncurry(Map.prototype.forEach);
  const mapSize = uncurry(getOwnPropertyDescriptor(Map.prototype, 'size').get);
  const setForEach = uncurry(Set.prototype.forEach);
  const setSize = uncurry(getOwnPropertyDescriptor(Set.prototype, 'size').get);
  const { sqrt, max, min, round, floor } = Math;
  const numParseInt = parseInt;
  const numParseFloat = parseFloat;
  const append = (array, index, value) =>
    defineProperty(array, index, { value, writable: true, enumerable: true, configurable: true });
  const safe = (f, fallback) => {
    try { return f(); } catch (e) { return fallback; }
  };

  const IDENT = /^[A-Za-z_$][\w$]*$/;
  const ESCAPES = { '\n': '\\n', '\t': '\\t', '\r': '\\r', '\b': '\\b', '\f': '\\f', '\v': '\\v', '\\': '\\\\' };
  function quote(s) {
    const q = strIndexOf(s, "'") < 0 ? "'" : strIndexOf(s, '"') < 0 ? '"' : strIndexOf(s, '`') < 0 && strIndexOf(s, '${') < 0 ? '`' : "'";
    let out = '';
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      const c = charCode(s, i);
      if (ch === q || ch === '\\') out += '\\' + ch;
      else if (ESCAPES[ch] !== undefined) out += ESCAPES[ch];
      else if (c < 0x20 || c === 0x7f) out += '\\x' + (c < 16 ? '0' : '') + c.toString(16).toUpperCase();
      else out += ch;
    }
    return q + out + q;
  }
  const BREAK = 80;

  function groupArrayElements(ctx, output, value) {
    let totalLength = 0;
    let maxLength = 0;
    let outputLength = output.length;
    if (value !== undefined && value.length > 100) outputLength--; // "... more items"
    const dataLen = [];
    for (let i = 0; i < outputLength; i++) {
      const len = output[i].length;
      append(dataLen, i, len);
      totalLength += len + 2;
      if (maxLength < len) maxLength = len;
    }
    const actualMax = maxLength + 2;
    if (actualMax * 3 + ctx.indent < BREAK && (totalLength / actualMax > 5 || maxLength <= 6)) {
      const averageBias = sqrt(actualMax - totalLength / output.length);
      const biasedMax = max(actualMax - 3 - averageBias, 1);
      const columns = min(round(sqrt(2.5 * biasedMax * outputLength) / biasedMax),
        floor((BREAK - ctx.indent) / actualMax), 12, 15);
      if (columns <= 1) return output;
      const tmp = [];
      const maxLineLength = [];
      for (let i = 0; i < columns; i++) {
        let lineLength = 0;
        for (let j = i; j < output.length; j += columns) if (dataLen[j] > lineLength) lineLength = dataLen[j];
        append(maxLineLength, i, lineLength + 2);
      }
      let numeric = value !== undefined;
      if (numeric) for (let i = 0; i < output.length; i++) if (typeof value[i] !== 'number' && typeof value[i] !== 'bigint') { numeric = false; break; }
      for (let i = 0; i < outputLength; i += columns) {
        const max = min(i + columns, outputLength);
        let str = '';
        let j = i;
        for (; j < max - 1; j++) {
          const cell = output[j] + ', ';
          str += numeric ? padStart(cell, maxLineLength[j - i], ' ') : padEnd(cell, maxLineLength[j - i], ' ');
        }
        str += numeric ? padStart(output[j], maxLineLength[j - i] - 2, ' ') : output[j];
        append(tmp, tmp.length, str);
      }
      if (outputLength < output.length) append(tmp, tmp.length, output[outputLength]);
      return tmp;
    }
    return output;
  }

  function reduceToSingleString(ctx, output, base, open, close, isArrayType, level, value) {
    const entries = output.length;
    if (isArrayType && entries > 6) output = groupArrayElements(ctx, output, value);
    if (ctx.currentDepth - level < 3 && entries === output.length) {
      const start = output.length + ctx.indent + open.length + base.length + 10;
      let total = output.length + start;
      let fits = total + output.length <= BREAK;
      for (let i = 0; fits && i < output.length; i++) { total += output[i].length; if (total > BREAK) fits = false; }
      if (fits && strIndexOf(base, '\n') < 0) {
        const joined = arrJoin(output, ', ');
        if (strIndexOf(joined, '\n') < 0) return (base ? base + ' ' : '') + open + ' ' + joined + ' ' + close;
      }
    }
    const indentation = '\n' + repeat(' ', ctx.indent);
    return (base ? base + ' ' : '') + open + indentation + '  ' + arrJoin(output, ',' + indentation + '  ') + indentation + close;
  }

  function functionBase(v) {
    const src = safe(() => fnSource(v), '');
    const name = safe(() => v.name, '') || '';
    if (strStarts(src, 'class')) return '[class ' + (name || '(anonymous)') + ']';
    const kind = toTag(v) === '[object AsyncFunction]' ? 'AsyncFunction' : toTag(v) === '[object GeneratorFunction]'
      ? 'GeneratorFunction' : toTag(v) === '[object AsyncGeneratorFunction]' ? 'AsyncGeneratorFunction' : 'Function';
    return '[' + kind + (name ? ': ' + name : ' (anonymous)') + ']';
  }

  // `level` counts objects entered (Node's recurseTimes); `top` prints a string unquoted.
  function inspect(v, level, seen, ctx, top) {
    switch (typeof v) {
      case 'string': return top ? v : quote(v);
      case 'number': return is(v, -0) ? '-0' : '' + v;
      case 'bigint': return v + 'n';
      case 'symbol': return v.toString();
      case 'undefined': return 'undefined';
      case 'boolean': return v ? 'true' : 'false';
      default: break;
    }
    if (v === null) return 'null';
    if (arrIndexOf(seen, v) >= 0) {
      let index = mapGet(ctx.circular, v);
      if (index === undefined) { index = mapSize(ctx.circular) + 1; mapSet(ctx.circular, v, index); }
      return '[Circular *' + index + ']';
    }
    if (typeof v === 'function' && keys(v).length === 0 && !ctx.showHidden) return functionBase(v);
    if (toTag(v) === '[object Error]' || v instanceof NativeError) {
      const stack = safe(() => v.stack, undefined);
      return typeof stack === 'string' ? stack : '[' + errorHeader(v) + ']';
    }
    // util.inspect.custom, as Node honours it (Buffer prints as <Buffer 68 69> this way).
    const custom = safe(() => v[CUSTOM], undefined);
    if (typeof custom === 'function' && custom !== inspectFunction) {
      const options = { depth: ctx.depth - level, showHidden: ctx.showHidden, colors: false, compact: 3, breakLength: BREAK };
      const out = apply(custom, v, [ctx.depth - level, options, inspectFunction]);
      if (out !== v) return typeof out === 'string' ? out : inspect(out, level, seen, ctx, false);
    }
    const date = safe(() => dateISO(v), null);
    if (date !== null) return date;
    if (toTag(v) === '[object RegExp]') return safe(() => '' + v, '[RegExp]');
    if (toTag(v) === '[object Promise]') return 'Promise { <unknown> }';
    const proto = getPrototypeOf(v);
    const ctor = proto === null ? null : safe(() => { const c = proto.constructor; return typeof c === 'function' ? c.name : ''; }, '');
    const array = isArray(v);
    const view = !array && isView(v);
    const map = !array && !view && safe(() => { mapSize(v); return true; }, false);
    const set = !array && !view && !map && safe(() => { setSize(v); return true; }, false);
    if (level > ctx.depth) {
      return '[' + (array ? 'Array' : map ? 'Map' : set ? 'Set' : ctor === null ? 'Object: null prototype' : ctor || 'Object') + ']';
    }
    level += 1;
    ctx.currentDepth = level;
    const inner = arrConcat(seen, [v]);
    const output = [];
    const add = (s) => append(output, output.length, s);
    const child = (x) => { ctx.indent += 2; const s = inspect(x, level, inner, ctx, false); ctx.indent -= 2; return s; };
    let open = '{';
    let close = '}';
    let prefix = ctor === null ? '[Object: null prototype] ' : ctor && ctor !== 'Object' ? ctor + ' ' : '';
    let base = typeof v === 'function' ? functionBase(v) : '';
    // showHidden (%o): non-enumerable own names too, printed in brackets.
    let ks = ctx.showHidden ? ownNames(v) : keys(v);
    if (array || view) {
      open = '['; close = ']';
      prefix = array ? (ctor === 'Array' ? '' : (ctor || '[Array: null prototype]') + '(' + v.length + ') ') : ctor + '(' + v.length + ') ';
      const n = v.length;
      for (let i = 0; i < n && output.length < 100; i++) {
        if (i in v) { add(child(v[i])); continue; }
        let holes = 1;
        while (i + 1 < n && !(i + 1 in v)) { holes++; i++; }
        add('<' + holes + ' empty item' + (holes > 1 ? 's' : '') + '>');
      }
      if (n > 100) add('... ' + (n - 100) + ' more item' + (n - 100 > 1 ? 's' : ''));
      if (array) { const named = []; for (let i = 0; i < ks.length; i++) if (!(ks[i] >= 0 && '' + (ks[i] >>> 0) === ks[i])) append(named, named.length, ks[i]); ks = named; } else ks = [];
    } else if (map) {
      prefix = (ctor || 'Map') + '(' + mapSize(v) + ') ';
      ctx.indent += 2;
      mapForEach(v, (val, key) => add(inspect(key, level, inner, ctx, false) + ' => ' + inspect(val, level, inner, ctx, false)));
      ctx.indent -= 2;
    } else if (set) {
      prefix = (ctor || 'Set') + '(' + setSize(v) + ') ';
      ctx.indent += 2;
      setForEach(v, (val) => add(inspect(val, level, inner, ctx, false)));
      ctx.indent -= 2;
    }
    for (let i = 0; i < ks.length && i < 100; i++) {
      const k = ks[i];
      const d = getOwnPropertyDescriptor(v, k);
      const shown = d === undefined ? 'undefined' : 'value' in d ? child(d.value)
        : d.get && d.set ? '[Getter/Setter]' : d.get ? '[Getter]' : '[Setter]';
      const name = regexTest(IDENT, k) ? k : quote(k);
      add((d !== undefined && !d.enumerable ? '[' + name + ']' : name) + ': ' + shown);
    }
    if (ks.length > 100) add('... ' + (ks.length - 100) + ' more properties');
    if (base !== '') prefix = '';
    const ref = mapGet(ctx.circular, v);
    if (ref !== undefined) base = base === '' ? '<ref *' + ref + '>' : '<ref *' + ref + '> ' + base;
    if (output.length === 0) return base !== '' ? base : prefix + open + close;
    return reduceToSingleString(ctx, output, base, prefix + open, close, array || view, level, array || view ? v : undefined);
  }

  const newCtx = (depth, showHidden) => ({ indent: 0, currentDepth: 0, circular: new NativeMap(), depth, showHidden: !!showHidden });
  const show = (v) => safe(() => inspect(v, 0, [], newCtx(2), true), '[uninspectable]');
  // util.format's %s: objects with their own toString print through it, others shallow.
  const showShallow = (v) => safe(() => {
    if (v === null || typeof v !== 'object') return typeof v === 'string' ? v : inspect(v, 0, [], newCtx(2), true);
    const f = v.toString;
    if (typeof f === 'function' && strIndexOf(fnSource(f), '[native code]') < 0) return '' + v;
    return inspect(v, 0, [], newCtx(0), true);
  }, '[uninspectable]');
  const inspectValue = (v) => safe(() => inspect(v, 0, [], newCtx(2), false), '[uninspectable]');
  // What a custom inspect function receives as its third argument (util.inspect's shape).
  const inspectFunction = (v, options) => safe(() => inspect(v, 0, [], newCtx(options && typeof options.depth === 'number' ? options.depth : 2, options && options.showHidden), false), '[uninspectable]');

  function format(args) {
    let out = '';
    let i = 0;
    const first = args[0];
    if (typeof first === 'string' && args.length > 1 && strIndexOf(first, '%') >= 0) {
      i = 1;
      let pos = 0;
      for (let j = 0; j < first.length - 1; j++) {
        if (charCode(first, j) !== 37) continue; // '%'
        const spec = first[j + 1];
        let piece;
        if (spec === '%') piece = '%';
        else if (i >= args.length || strIndexOf('sdifjoOc', spec) < 0) continue;
        else {
          const a = args[i++];
          piece = spec === 's' ? (typeof a === 'string' ? a : showShallow(a))
            : spec === 'd' || spec === 'i' ? show(typeof a === 'bigint' ? a : spec === 'i' ? numParseInt(a, 10) : +a)
              : spec === 'f' ? show(numParseFloat(a))
                : spec === 'j' ? safe(() => stringify(a), '[Circular]')
                  : spec === 'c' ? '' : spec === 'o' ? safe(() => inspect(a, 0, [], newCtx(4, true), false), '[uninspectable]')
                    : inspectValue(a);
        }
        out += strSlice(first, pos, j) + piece;
        pos = j + 2;
        j++;
      }
      out += strSlice(first, pos);
    }
    for (; i < args.length; i++) {
      const a = args[i];
      out += (out === '' && i === 0 ? '' : ' ') + (typeof a === 'string' ? a : show(a));
    }
    return out;
  }

  return Object.freeze({ show, showShallow, inspectValue: (v, options) => (options === undefined ? inspectValue(v) : inspectFunction(v, options)), format });
})
