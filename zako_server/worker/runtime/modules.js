/*
 * The task's module system: Node's resolution over the task's module tree, lazy
 * compilation, JSON modules, CommonJS and (transformed) ES modules with their interop.
 *
 * Why it looks the way it does:
 * - The tree is a map {root-relative path: text}: the task's own files, plus its tree's
 *   pack (worker/sources.py) when it names one, parsed once per isolate and looked up
 *   beside them, so a repeated 1,000-file tree costs a task nothing per file. Nothing
 *   in it is compiled until it is first required or imported, so files nobody loads (READMEs, bin scripts, .d.ts, JSON
 *   nobody reads) cost only their bytes and can be anything, as in Node.
 * - Resolution is Node's CommonJS algorithm (LOAD_AS_FILE, LOAD_INDEX, LOAD_AS_DIRECTORY,
 *   LOAD_NODE_MODULES with package.json `exports`, `imports` and self-reference), with
 *   conditions zako, node, require|import (the importer's kind), module-sync, default (the importer's kind). Past Node's
 *   extensions it also probes TypeScript's (`./x.js` may name `x.ts`, as tsc allows).
 * - ES modules and TypeScript arrive already transformed by the server's transform stage
 *   (sucrase: imports become require calls, types are erased, lines kept) with a column
 *   map back to the original; `import(` and `import.meta` were renamed, same length, to
 *   the wrapper's `__zimp(` and `__zako_meta`. An ES module runs in an async wrapper so
 *   that top-level await works; it ran synchronously when its `done` flag is set when
 *   the call returns, which is when `require()` of it may answer (Node 22's rule).
 * - Paths are the tree's own names: __filename is 'node_modules/x/index.js', not an
 *   absolute path, and import.meta.url is file:///node_modules/x/index.mjs.
 */
(function makeModules(host) {
  'use strict';
  const { hostError, isBuiltin, loadBuiltin, evalScript, deepFreeze } = host;
  // runtime/__init__.py's _WRAPPER_OPEN (it must agree, for syntax error columns).
  const cjsOpen = '(function (exports, require, module, __filename, __dirname, __zimp, __zako_meta) {';
  const { defineProperty, freeze, keys, create } = Object;
  const FP = Function.prototype;
  const uncurry = FP.bind.bind(FP.call);
  const apply = Reflect.apply;
  const NativeMap = Map;
  const NativeError = Error;
  const NativeTypeError = TypeError;
  const NativeSyntaxError = SyntaxError;
  const NativePromise = Promise;
  const promiseThen = uncurry(Promise.prototype.then);
  const mapGet = uncurry(Map.prototype.get);
  const mapSet = uncurry(Map.prototype.set);
  const mapHas = uncurry(Map.prototype.has);
  const mapDelete = uncurry(Map.prototype.delete);
  const mapClear = uncurry(Map.prototype.clear);
  const mapForEach = uncurry(Map.prototype.forEach);
  const strSlice = uncurry(String.prototype.slice);
  const strStarts = uncurry(String.prototype.startsWith);
  const strEnds = uncurry(String.prototype.endsWith);
  const strIndexOf = uncurry(String.prototype.indexOf);
  const strLastIndexOf = uncurry(String.prototype.lastIndexOf);
  const strSplit = uncurry(String.prototype.split);
  const arrJoin = uncurry(Array.prototype.join);
  const arrPush = uncurry(Array.prototype.push);
  const isArray = Array.isArray;
  const parse = JSON.parse;
  const decodeComponent = decodeURIComponent;
  const stringify = JSON.stringify;
  const hasOwn = (o, k) => o !== null && typeof o === 'object' && Object.prototype.hasOwnProperty.call(o, k);

  const EXTENSIONS = freeze(['.js', '.json', '.node', '.ts', '.tsx', '.mts', '.cts', '.jsx', '.mjs', '.cjs']);
  const TS_TWIN = freeze({ '.js': ['.ts', '.tsx'], '.mjs': ['.mts'], '.cjs': ['.cts'], '.jsx': ['.tsx'] });
  const ESM_OPEN = "(async function (exports, require, module, __filename, __dirname, __zimp, __zako_meta, __zako_sync) {'use strict';try {";
  const ESM_CLOSE = '\n} catch (e) { __zako_sync.threw = true; __zako_sync.error = e; throw e; } __zako_sync.done = true; })';
  const PLAIN_NAME = /^[\w.\-/@+~$]+$/;

  // Per isolate (kept across the tasks of a warm one; see worker/sources.py): the texts
  // Python handed over, by digest, and the wrappers V8 compiled from them. A wrapper is
  // frozen (with its prototype) before a second task can reach it, and called afresh
  // for each task, so every task still gets its own module instances.
  const store = new NativeMap(); // digest -> text
  const wrappers = new NativeMap(); // digest \n variant \n path -> { fn, file, digest }
  const answers = new NativeMap(); // digest -> a transform answer kept by digest, parsed
  const packs = new NativeMap(); // digest -> a tree pack, parsed: { files, prepared }
  let fileSerial = 0; // sourceURL numbers: never reused while a wrapper may carry one
  let compiledHits = 0;
  let compiledMisses = 0;

  // Per task.
  const sources = new NativeMap(); // path -> digest (the task's own files)
  let pack = null; // the task's tree pack, or null (its files are the task's too)
  const transient = new NativeMap(); // digest -> text this task only (not in the store)
  let reuse = false; // a hardened isolate: wrappers are worth keeping
  const prepared = new NativeMap(); // path -> the transform stage's answer
  const cache = new NativeMap(); // path -> module object (require.cache)
  const files = new NativeMap(); // sourceURL -> { name, prefix, map }
  const compiled = new NativeMap(); // path -> wrapper function
  const builtinNamespaces = new NativeMap(); // built-in name -> its namespace for import
  const manifests = new NativeMap(); // package.json path -> parsed object, or null
  let requireCache = create(null); // require.cache: a new object per task

  // files: [path, digest]; give: [digest, text, keep] the isolate lacks; drop: digests
  // the worker's store forgot (their texts and wrappers go); tree: a pack's digest or null.
  function begin(pairs, preparedPairs, give, drop, reuseIsolate, tree) {
    for (let i = 0; i < drop.length; i++) forget(drop[i]);
    for (let i = 0; i < give.length; i++) mapSet(give[i][2] === true ? store : transient, give[i][0], give[i][1]);
    pack = typeof tree === 'string' ? packOf(tree) : null;
    for (let i = 0; i < pairs.length; i++) mapSet(sources, pairs[i][0], pairs[i][1]);
    for (let i = 0; i < preparedPairs.length; i++) {
      const info = preparedPairs[i][1];
      mapSet(prepared, preparedPairs[i][0], typeof info.entry_digest === 'string' ? answer(info.entry_digest) : info);
    }
    reuse = reuseIsolate === true;
    compiledHits = 0;
    compiledMisses = 0;
  }
  // Shared by the tasks of this isolate, and only read (never handed to a task): frozen
  // all the same.
  function answer(digest) {
    let found = mapGet(answers, digest);
    if (found === undefined) {
      found = deepFreeze(parse(textOf(digest)));
      if (mapHas(store, digest)) mapSet(answers, digest, found);
    }
    return found;
  }
  // A tree pack ({"files": [[path, digest]], "prepared": [[path, answer]]}), parsed once
  // per isolate; read only, and frozen like the answers.
  function packOf(digest) {
    let found = mapGet(packs, digest);
    if (found === undefined) {
      const raw = parse(textOf(digest));
      const files = new NativeMap();
      const answersOf = new NativeMap();
      for (let i = 0; i < raw.files.length; i++) mapSet(files, raw.files[i][0], raw.files[i][1]);
      for (let i = 0; i < raw.prepared.length; i++) mapSet(answersOf, raw.prepared[i][0], deepFreeze(raw.prepared[i][1]));
      found = freeze({ files, prepared: answersOf });
      if (mapHas(store, digest)) mapSet(packs, digest, found);
    }
    return found;
  }
  // A file's digest and transform answer: the task's own, else its tree's.
  function digestAt(path) {
    const d = mapGet(sources, path);
    return d !== undefined || pack === null ? d : mapGet(pack.files, path);
  }
  function preparedAt(path) {
    const p = mapGet(prepared, path);
    return p !== undefined || pack === null ? p : mapGet(pack.prepared, path);
  }
  function forget(digest) {
    mapDelete(store, digest);
    mapDelete(answers, digest);
    mapDelete(packs, digest);
    const gone = [];
    mapForEach(wrappers, (w, key) => { if (w.digest === digest) arrPush(gone, key); });
    for (let i = 0; i < gone.length; i++) mapDelete(wrappers, gone[i]);
  }
  function reset() {
    mapClear(sources); mapClear(transient); mapClear(prepared); mapClear(cache); mapClear(files);
    mapClear(manifests); mapClear(compiled); mapClear(builtinNamespaces);
    requireCache = create(null);
    reuse = false;
    pack = null;
  }
  // A file's text by its digest (the store's, or this task's own).
  function textOf(digest) {
    const t = mapGet(transient, digest);
    return t !== undefined ? t : mapGet(store, digest);
  }
  const textAt = (path) => textOf(digestAt(path));

  // ---- paths ------------------------------------------------------------------------
  const dirname = (name) => { const i = strLastIndexOf(name, '/'); return i < 0 ? '' : strSlice(name, 0, i); };
  const join = (dir, rest) => (dir === '' ? rest : rest === '' ? dir : dir + '/' + rest);
  function normalize(path) {
    const out = [];
    const parts = strSplit(path, '/');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (p === '' || p === '.') continue;
      if (p === '..') { if (out.length) out.length -= 1; } else arrPush(out, p);
    }
    return arrJoin(out, '/');
  }
  const isFile = (p) => p !== '' && (mapHas(sources, p) || (pack !== null && mapHas(pack.files, p)));
  const fileCount = () => sources.size + (pack === null ? 0 : pack.files.size);
  function eachFile(fn) {
    mapForEach(sources, (v, k) => fn(k));
    if (pack !== null) mapForEach(pack.files, (v, k) => fn(k));
  }
  const extname = (p) => {
    const slash = strLastIndexOf(p, '/');
    const dot = strLastIndexOf(p, '.');
    return dot > slash + 1 ? strSlice(p, dot) : '';
  };

  function manifest(path) {
    if (mapHas(manifests, path)) return mapGet(manifests, path);
    let value = null;
    if (isFile(path)) {
      try { value = parse(textAt(path)); } catch (e) {
        throw hostError(NativeError, 'Invalid package config ' + path + ': ' + e.message, 'js_error', 'ERR_INVALID_PACKAGE_CONFIG');
      }
      if (value === null || typeof value !== 'object' || isArray(value)) value = null;
    }
    mapSet(manifests, path, value);
    return value;
  }
  // The nearest package.json at or above dir: { dir, pkg } or null.
  function scope(dir) {
    for (let d = dir; ; d = dirname(d)) {
      const pkg = manifest(join(d, 'package.json'));
      if (pkg !== null) return { dir: d, pkg };
      if (d === '' || strEnds(d, 'node_modules')) return null;
    }
  }

  // ---- resolution (Node's CommonJS algorithm) ---------------------------------------
  function notFound(spec, from, extra) {
    let list;
    if (fileCount() <= SMALL_TREE) {
      const names = [];
      eachFile((k) => arrPush(names, k));
      list = '. Available modules: ' + (arrJoin(names, ', ') || '(none)') + '; built-in: zako:core, zako:context, node:*';
    } else {
      const near = nearest(spec, from);
      list = near.length ? '. Nearest: ' + arrJoin(near, ', ') + ' (of ' + fileCount() + ' files)' : '';
    }
    const message = "Cannot find module '" + spec + "'" + (from === null ? '' : " from '" + from + "'") +
      (extra ? ' (' + extra + ')' : '') + list;
    return hostError(NativeError, message, 'module_not_found', 'MODULE_NOT_FOUND');
  }
  const SMALL_TREE = 16; // up to this many files, a miss lists them all
  // A few names worth suggesting: files in the requiring directory, or packages visible
  // from it, whose name shares the most leading characters with the specifier. Bounded,
  // so that a miss in a tree of thousands of files stays a short message.
  function nearest(spec, from) {
    const base = strStarts(spec, '.') || strStarts(spec, '/') ? normalize(join(dirname(from || ''), spec))
      : 'node_modules/' + spec;
    const scores = [];
    let looked = 0;
    eachFile((name) => {
      if (looked++ > 20000) return;
      let n = 0;
      while (n < name.length && n < base.length && name[n] === base[n]) n++;
      if (n > 0) arrPush(scores, [n, name]);
    });
    scores.sort((a, b) => b[0] - a[0] || a[1].length - b[1].length);
    const out = [];
    for (let i = 0; i < scores.length && out.length < 3; i++) arrPush(out, scores[i][1]);
    return out;
  }

  function loadAsFile(x) {
    if (isFile(x)) return x;
    for (let i = 0; i < EXTENSIONS.length; i++) if (isFile(x + EXTENSIONS[i])) return x + EXTENSIONS[i];
    const ext = extname(x);
    const twins = hasOwn(TS_TWIN, ext) ? TS_TWIN[ext] : null;
    if (twins !== null) {
      const stem = strSlice(x, 0, x.length - ext.length);
      for (let i = 0; i < twins.length; i++) if (isFile(stem + twins[i])) return stem + twins[i];
    }
    return null;
  }
  function loadIndex(x) {
    for (let i = 0; i < EXTENSIONS.length; i++) {
      const p = join(x, 'index' + EXTENSIONS[i]);
      if (isFile(p)) return p;
    }
    return null;
  }
  function loadAsDirectory(x) {
    const pkg = manifest(join(x, 'package.json'));
    if (pkg !== null && typeof pkg.main === 'string' && pkg.main !== '') {
      const m = normalize(join(x, pkg.main));
      const found = loadAsFile(m) || loadIndex(m);
      if (found !== null) return found;
    }
    return loadIndex(x);
  }

  // The conditions a package's `exports`/`imports` may select: Zako's own, 'node' (the
  // runtime provides Node's built-in modules), 'require' or 'import' (the importer's
  // kind), 'module-sync' (Node 22 has require() of ES modules), then 'default'.
  const conditionsFor = (kind) => ['zako', 'node', kind, 'module-sync', 'default'];

  // PACKAGE_TARGET_RESOLVE from Node's ESM resolution spec.
  function targetResolve(pkgDir, target, subpath, pattern, internal, conditions, spec) {
    if (typeof target === 'string') {
      if (!strStarts(target, './')) {
        if (!internal || strStarts(target, '../') || strStarts(target, '/')) {
          throw hostError(NativeError, 'Invalid package target ' + stringify(target) + ' for ' + spec, 'module_not_found', 'ERR_INVALID_PACKAGE_TARGET');
        }
        return { bare: pattern ? arrJoin(strSplit(target, '*'), subpath) : target + subpath };
      }
      const resolvedTarget = pattern ? arrJoin(strSplit(target, '*'), subpath) : target + subpath;
      return { path: normalize(join(pkgDir, resolvedTarget)) };
    }
    if (isArray(target)) {
      let last = null;
      for (let i = 0; i < target.length; i++) {
        try {
          const r = targetResolve(pkgDir, target[i], subpath, pattern, internal, conditions, spec);
          if (r !== undefined && r !== null) return r;
        } catch (e) { last = e; }
      }
      if (last !== null) throw last;
      return null;
    }
    if (target !== null && typeof target === 'object') {
      const ks = keys(target);
      for (let i = 0; i < ks.length; i++) {
        const k = ks[i];
        if (conditions.indexOf(k) >= 0) {
          const r = targetResolve(pkgDir, target[k], subpath, pattern, internal, conditions, spec);
          if (r === undefined) continue;
          return r;
        }
      }
      return undefined;
    }
    return null; // null target: explicitly not exported
  }

  // PACKAGE_IMPORTS_EXPORTS_RESOLVE: exact keys, then the longest matching '*' pattern.
  function matchKey(matchKeyText, map, pkgDir, internal, conditions, spec) {
    if (hasOwn(map, matchKeyText) && strIndexOf(matchKeyText, '*') < 0) {
      return targetResolve(pkgDir, map[matchKeyText], '', false, internal, conditions, spec);
    }
    let bestKey = null;
    let bestSub = '';
    const ks = keys(map);
    for (let i = 0; i < ks.length; i++) {
      const k = ks[i];
      const star = strIndexOf(k, '*');
      if (star < 0 || strIndexOf(k, '*', star + 1) >= 0) continue;
      const prefix = strSlice(k, 0, star);
      const suffix = strSlice(k, star + 1);
      if (!strStarts(matchKeyText, prefix) || matchKeyText === prefix) continue;
      if (suffix !== '' && (!strEnds(matchKeyText, suffix) || matchKeyText.length < k.length)) continue;
      if (bestKey === null || patternCompare(bestKey, k) > 0) {
        bestKey = k;
        bestSub = strSlice(matchKeyText, prefix.length, matchKeyText.length - suffix.length);
      }
    }
    if (bestKey === null) return undefined;
    return targetResolve(pkgDir, map[bestKey], bestSub, true, internal, conditions, spec);
  }
  function patternCompare(a, b) {
    const ai = strIndexOf(a, '*');
    const bi = strIndexOf(b, '*');
    const baseA = ai < 0 ? a.length : ai + 1;
    const baseB = bi < 0 ? b.length : bi + 1;
    if (baseA > baseB) return -1;
    if (baseB > baseA) return 1;
    if (ai < 0) return 1;
    if (bi < 0) return -1;
    if (a.length > b.length) return -1;
    if (b.length > a.length) return 1;
    return 0;
  }

  function exportsResolve(pkgDir, pkg, subpath, conditions, spec) {
    let exp = pkg.exports;
    const ks = exp !== null && typeof exp === 'object' && !isArray(exp) ? keys(exp) : [];
    const sugar = typeof exp === 'string' || isArray(exp) || (ks.length > 0 && !strStarts(ks[0], '.'));
    if (sugar) exp = { '.': exp };
    const r = exp !== null && typeof exp === 'object' ? matchKey(subpath, exp, pkgDir, false, conditions, spec) : undefined;
    if (r === undefined || r === null) {
      throw hostError(NativeError, "Package subpath '" + subpath + "' is not defined by \"exports\" in " +
        join(pkgDir, 'package.json') + " (imported as '" + spec + "')", 'module_not_found', 'ERR_PACKAGE_PATH_NOT_EXPORTED');
    }
    return r;
  }

  function splitBare(spec) {
    const parts = strSplit(spec, '/');
    const n = strStarts(spec, '@') ? 2 : 1;
    const name = arrJoin(parts.slice(0, n), '/');
    return { name, subpath: parts.length > n ? './' + arrJoin(parts.slice(n), '/') : '.' };
  }

  function finish(r, from, spec, kind) {
    if (r.bare !== undefined) return resolvePath(from, r.bare, kind);
    if (isFile(r.path)) return r.path;
    throw notFound(spec, from, 'the package maps it to ' + r.path + ', which is not in the tree');
  }

  function resolvePath(from, spec, kind) {
    if (typeof spec !== 'string') throw new NativeTypeError('The "id" argument must be of type string. Received ' + typeof spec);
    if (spec === '') throw hostError(NativeTypeError, "The argument 'id' must be a non-empty string. Received ''", 'js_error', 'ERR_INVALID_ARG_VALUE');
    if (isBuiltin(spec)) return spec;
    const dir = from === null ? '' : dirname(from);
    const conditions = conditionsFor(kind);
    if (strStarts(spec, 'file:///')) spec = '/' + strSlice(spec, 8);
    if (spec === '.' || spec === '..' || strStarts(spec, './') || strStarts(spec, '../') || strStarts(spec, '/')) {
      const x = strStarts(spec, '/') ? normalize(spec) : normalize(join(dir, spec));
      const trailing = strEnds(spec, '/') || spec === '.' || spec === '..';
      const found = (trailing ? null : loadAsFile(x)) || loadAsDirectory(x);
      if (found !== null) return found;
      throw notFound(spec, from);
    }
    if (strStarts(spec, '#')) {
      const s = scope(dir);
      if (s !== null && s.pkg.imports !== null && typeof s.pkg.imports === 'object') {
        const r = matchKey(spec, s.pkg.imports, s.dir, true, conditions, spec);
        if (r !== undefined && r !== null) return finish(r, from, spec, kind);
      }
      throw hostError(NativeError, "Package import specifier '" + spec + "' is not defined" +
        (s === null ? '' : ' in ' + join(s.dir, 'package.json')) + (from === null ? '' : " imported from '" + from + "'"),
      'module_not_found', 'ERR_PACKAGE_IMPORT_NOT_DEFINED');
    }
    const { name, subpath } = splitBare(spec);
    // LOAD_PACKAGE_SELF: a package may import itself by name through its own exports.
    const self = scope(dir);
    if (self !== null && self.pkg.name === name && self.pkg.exports !== undefined && self.pkg.exports !== null) {
      return finish(exportsResolve(self.dir, self.pkg, subpath, conditions, spec), from, spec, kind);
    }
    // LOAD_NODE_MODULES, walking up from the requiring directory.
    for (let d = dir; ; d = dirname(d)) {
      const last = strSlice(d, strLastIndexOf(d, '/') + 1);
      if (last !== 'node_modules') {
        const nm = join(d, 'node_modules');
        const pkgDir = join(nm, name);
        const pkg = manifest(join(pkgDir, 'package.json'));
        if (pkg !== null && pkg.exports !== undefined && pkg.exports !== null) {
          return finish(exportsResolve(pkgDir, pkg, subpath, conditions, spec), from, spec, kind);
        }
        const x = join(nm, spec);
        const found = (strEnds(spec, '/') ? null : loadAsFile(x)) || loadAsDirectory(x);
        if (found !== null) return found;
      }
      if (d === '') break;
    }
    // A bare name that is a path at the tree's root ('util.js', 'lib/x') still works, as
    // Zako tasks have always named their modules that way.
    const x = normalize(spec);
    const found = loadAsFile(x) || loadAsDirectory(x);
    if (found !== null) return found;
    throw notFound(spec, from);
  }

  function modulePaths(name) {
    const out = [];
    for (let d = dirname(name); ; d = dirname(d)) {
      if (strSlice(d, strLastIndexOf(d, '/') + 1) !== 'node_modules') arrPush(out, join(d, 'node_modules'));
      if (d === '') break;
    }
    return out;
  }

  // ---- loading ----------------------------------------------------------------------
  function isEsm(name) {
    const p = preparedAt(name);
    return p !== undefined && p.esm === true;
  }

  function fileName(name) {
    if (PLAIN_NAME.test(name) && !strStarts(name, 'zako')) return name;
    return 'zako-module-' + fileSerial++;
  }

  function compile(name) {
    if (mapHas(compiled, name)) return mapGet(compiled, name);
    const p = preparedAt(name);
    if (p !== undefined && p.error !== undefined && p.error !== null) {
      const e = hostError(NativeSyntaxError, p.error.message, 'syntax_error');
      host.locate(e, { module: name, line: p.error.line, column: p.error.column });
      throw e;
    }
    const esm = p !== undefined && p.esm === true;
    // Which text V8 compiles: the transform's code (inline, or by digest) or the file's.
    let digest = digestAt(name);
    let code;
    if (p !== undefined && typeof p.code === 'string') { code = p.code; digest = undefined; }
    else if (p !== undefined && typeof p.code_digest === 'string') { digest = p.code_digest; code = textOf(digest); }
    else code = textOf(digest);
    const rec = { name, prefix: 0, map: p !== undefined ? p.map : null, esm };
    // Cached only for texts the isolate keeps: the key names the text, how it is wrapped
    // and the path (its sourceURL and what the author's stack frames say).
    const key = reuse && digest !== undefined && mapHas(store, digest)
      ? digest + (esm ? '\ne\n' : p !== undefined && p.code_digest !== undefined ? '\np\n' : '\nc\n') + name : null;
    if (key !== null) {
      const hit = mapGet(wrappers, key);
      if (hit !== undefined) {
        mapDelete(wrappers, key); mapSet(wrappers, key, hit); // most recent last
        rec.prefix = esm ? ESM_OPEN.length : cjsOpen.length;
        mapSet(files, hit.file, rec);
        mapSet(compiled, name, hit.fn);
        compiledHits++;
        return hit.fn;
      }
    }
    if (strStarts(code, '#!')) code = '//' + strSlice(code, 2); // hashbang, same length
    const open = esm ? ESM_OPEN : cjsOpen;
    const file = fileName(name);
    rec.prefix = open.length;
    mapSet(files, file, rec);
    compiledMisses++;
    try {
      const fn = evalScript(open + code + (esm ? ESM_CLOSE : '\n})') + '\n//# sourceURL=' + file);
      if (key !== null) {
        // Shared by the tasks to come: nothing a task can reach of it may take a mark
        // (arguments.callee, fn.caller, a stack frame's getFunction, the prototype).
        if (fn.prototype !== undefined) freeze(fn.prototype);
        freeze(fn);
        mapSet(wrappers, key, { fn, file, digest });
      }
      mapSet(compiled, name, fn);
      return fn;
    } catch (e) {
      host.compileFailed(e, name);
      throw e;
    }
  }
  // This task's figures: [loaded from a kept wrapper, compiled].
  const compileCounts = () => [compiledHits, compiledMisses];

  function meta(name) {
    return freeze({
      url: 'file:///' + name,
      filename: name,
      dirname: dirname(name),
      resolve: (s) => 'file:///' + resolvePath(name, s, 'import'),
    });
  }

  // The names Node offers an ES module importing a CommonJS one: what cjs-module-lexer
  // found in its text (the transform stage's `cjs`), with those of the modules it
  // re-exports; without that answer, module.exports' own enumerable properties.
  function cjsNames(module, seen) {
    const p = preparedAt(module.id);
    const ex = module.exports;
    if (p === undefined || p.cjs === undefined) {
      return ex !== null && (typeof ex === 'object' || typeof ex === 'function') ? keys(ex) : [];
    }
    const names = p.cjs.exports.slice();
    arrPush(seen, module.id);
    for (let i = 0; i < p.cjs.reexports.length; i++) {
      try {
        const target = resolvePath(module.id, p.cjs.reexports[i], 'require');
        if (isBuiltin(target) || seen.indexOf(target) >= 0) continue;
        const dep = instantiate(target);
        const more = dep.esm ? keys(dep.exports) : cjsNames(dep, seen);
        for (let j = 0; j < more.length; j++) arrPush(names, more[j]);
      } catch (e) { /* as Node: a re-export that does not resolve adds nothing */ }
    }
    return names;
  }

  // A CommonJS module as an ES module sees it: module.exports as default, and the names
  // above as named exports (read through getters).
  function cjsNamespace(module) {
    if (module.namespace !== undefined) return module.namespace;
    const ex = module.exports;
    const ns = create(null);
    const ks = cjsNames(module, []);
    for (let i = 0; i < ks.length; i++) {
      const k = ks[i];
      if (k !== 'default' && k !== '__esModule' && !hasOwn(ns, k)) {
        defineProperty(ns, k, { get: () => (ex !== null && ex !== undefined ? module.exports[k] : undefined), enumerable: true });
      }
    }
    defineProperty(ns, 'default', { value: ex, enumerable: true });
    defineProperty(ns, '__esModule', { value: true });
    defineProperty(ns, Symbol.toStringTag, { value: 'Module' });
    module.namespace = freeze(ns);
    return module.namespace;
  }

  function makeRequire(name, kind) {
    const require = (s) => {
      const resolved = resolvePath(name, s, kind);
      if (kind === 'import') return importSync(name, resolved);
      return requireResolved(resolved);
    };
    require.resolve = (s) => resolvePath(name, s, 'require');
    require.resolve.paths = (s) => (isBuiltin(s) ? null : modulePaths(name));
    require.cache = requireCache;
    require.main = undefined;
    return require;
  }

  // What `require(path)` returns once resolved. An ES module answers its namespace, or
  // what it exports as 'module.exports' when it does (Node 22's rule for require(esm)).
  function requireResolved(resolved) {
    if (isBuiltin(resolved)) return loadBuiltin(resolved);
    const module = instantiate(resolved);
    if (module.esm) {
      if (module.pending) {
        throw hostError(NativeError, 'require() cannot be used on an ES module with top-level await: ' + resolved +
          '; use import() instead', 'js_error', 'ERR_REQUIRE_ASYNC_MODULE');
      }
      if (hasOwn(module.exports, 'module.exports')) return module.exports['module.exports'];
      return module.exports;
    }
    return module.exports;
  }

  // String export names the transform replaced by placeholders get their names back:
  // a live getter under the real name, the placeholder hidden once the module ran.
  function exportNames(module, names) {
    const ks = keys(names);
    for (let i = 0; i < ks.length; i++) {
      const id = ks[i];
      defineProperty(module.exports, names[id], { get: () => module.exports[id], enumerable: true, configurable: true });
    }
  }
  function hidePlaceholders(module, names) {
    const ks = keys(names);
    for (let i = 0; i < ks.length; i++) {
      if (hasOwn(module.exports, ks[i])) defineProperty(module.exports, ks[i], { enumerable: false });
    }
  }

  // What a static import (compiled to a require call) sees.
  function importSync(from, resolved) {
    if (isBuiltin(resolved)) {
      const b = loadBuiltin(resolved);
      return b !== null && typeof b === 'object' && b.__esModule ? b : builtinNamespace(resolved, b);
    }
    const module = instantiate(resolved);
    if (module.esm) {
      if (module.pending) {
        throw hostError(NativeError, from + ' statically imports ' + resolved + ', which uses top-level await; ' +
          'Zako evaluates such modules only through import() or as the entry', 'js_error', 'ERR_REQUIRE_ASYNC_MODULE');
      }
      return module.exports;
    }
    return cjsNamespace(module);
  }
  function builtinNamespace(name, value) {
    if (!mapHas(builtinNamespaces, name)) mapSet(builtinNamespaces, name, cjsNamespace({ exports: value }));
    return mapGet(builtinNamespaces, name);
  }

  function dynamicImport(from, spec) {
    return new NativePromise((res, rej) => {
      const resolved = resolvePath(from, '' + spec, 'import');
      if (isBuiltin(resolved)) { res(importSync(from, resolved)); return; }
      const module = instantiate(resolved);
      if (module.esm) {
        if (module.pending) promiseThen(module.evaluation, () => res(module.exports), rej);
        else res(module.exports);
      } else {
        res(cjsNamespace(module));
      }
    });
  }

  // Runs a module once (cycles see partial exports); a module that threw is not cached.
  function instantiate(name) {
    const cached = mapGet(cache, name);
    if (cached !== undefined) return cached;
    const esm = isEsm(name);
    const module = {
      id: name, filename: name, path: dirname(name), exports: {}, loaded: false, children: [],
      paths: modulePaths(name), esm, pending: false, evaluation: undefined,
    };
    if (strEnds(name, '.json') && preparedAt(name) === undefined) {
      try {
        module.exports = parse(textAt(name));
      } catch (e) {
        throw hostError(NativeSyntaxError, name + ': ' + e.message, 'js_error');
      }
      module.loaded = true;
      mapSet(cache, name, module);
      requireCache[name] = module;
      return module;
    }
    const fn = compile(name);
    const require = makeRequire(name, esm ? 'import' : 'require');
    module.require = require;
    mapSet(cache, name, module);
    requireCache[name] = module;
    const zimp = (s) => dynamicImport(name, s);
    try {
      if (!esm) {
        apply(fn, module.exports, [module.exports, require, module, name, dirname(name), zimp, undefined]);
      } else {
        const names = preparedAt(name).names;
        if (names) exportNames(module, names);
        const sync = { done: false, threw: false, error: undefined };
        const p = apply(fn, undefined, [module.exports, require, module, name, dirname(name), zimp, meta(name), sync]);
        if (!sync.done) {
          if (sync.threw) {
            // It failed before its first await: throw as a synchronous module would.
            promiseThen(p, undefined, () => {});
            throw sync.error;
          }
          module.pending = true;
          module.evaluation = promiseThen(p, () => {
            module.pending = false;
            module.loaded = true;
            if (names) hidePlaceholders(module, names);
          });
          promiseThen(p, undefined, () => { mapDelete(cache, name); delete requireCache[name]; });
          return module;
        }
        if (names) hidePlaceholders(module, names);
      }
    } catch (e) {
      mapDelete(cache, name);
      delete requireCache[name];
      throw e;
    }
    module.loaded = true;
    return module;
  }

  // The entry: its export (module.exports, or an ES module's default export), or a
  // promise of it when the entry awaits at top level.
  function entryExport(entry) {
    const name = resolvePath(null, strStarts(entry, './') ? entry : './' + entry, 'require');
    const module = instantiate(name);
    if (!module.esm) return { value: module.exports };
    if (module.pending) return { promise: promiseThen(module.evaluation, () => module.exports.default) };
    return { value: module.exports.default };
  }

  // A source map's `mappings` (base64 VLQ) as per-line flat triples
  // [generatedColumn, sourceLine, sourceColumn], 0-based.
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  function decodeMap(mappings) {
    const lines = [];
    let row = [];
    let genCol = 0;
    let srcLine = 0;
    let srcCol = 0;
    let fields = [];
    let value = 0;
    let shift = 0;
    const flush = () => {
      if (fields.length >= 4) {
        genCol += fields[0]; srcLine += fields[2]; srcCol += fields[3];
        arrPush(row, genCol, srcLine, srcCol);
      } else if (fields.length >= 1) {
        genCol += fields[0];
      }
      fields = [];
    };
    for (let i = 0; i < mappings.length; i++) {
      const ch = mappings[i];
      if (ch === ',' || ch === ';') {
        flush();
        if (ch === ';') { arrPush(lines, row); row = []; genCol = 0; }
        continue;
      }
      const digit = strIndexOf(B64, ch);
      value += (digit & 31) * 2 ** shift;
      if (digit & 32) { shift += 5; continue; }
      arrPush(fields, value % 2 === 1 ? -((value - 1) / 2) : value / 2);
      value = 0;
      shift = 0;
    }
    flush();
    arrPush(lines, row);
    return lines;
  }

  // A stack frame's (line, column) in the author's file: the wrapper's shift taken off
  // line 1, then the transform's column map applied (decoded on first use).
  function frame(file, line, column) {
    const rec = mapGet(files, file);
    if (rec === undefined) return undefined;
    if (line === 1 && typeof column === 'number') column -= rec.prefix;
    if (typeof rec.map === 'string') rec.map = decodeMap(rec.map);
    if (rec.map !== null && rec.map !== undefined && typeof column === 'number') {
      const segs = rec.map[line - 1];
      if (isArray(segs) && segs.length >= 3) {
        const c0 = column - 1;
        let best = -1;
        for (let i = 0; i + 2 < segs.length; i += 3) { if (segs[i] <= c0) best = i; else break; }
        if (best < 0) best = 0;
        line = segs[best + 1] + 1;
        column = segs[best + 2] + (c0 >= segs[best] ? c0 - segs[best] : 0) + 1;
      }
    }
    return { module: rec.name, line, column, esm: rec.esm };
  }

  // node:module's createRequire(filename | file: URL), for the built-in module layer: a
  // require that resolves as a CommonJS module at that path of the task's tree would. Node
  // wants an absolute path or file: URL; a task's __filename is root-relative, so that
  // is accepted too. As in Node, a path ending in '/' names a directory.
  function createRequire(where) {
    const href = where !== null && typeof where === 'object' ? '' + where.href : where;
    if (typeof href !== 'string' || href === '') {
      throw hostError(NativeTypeError, 'The argument \'filename\' must be a file URL object, file URL string, or ' +
        'absolute path string. Received ' + stringify(href), 'js_error', 'ERR_INVALID_ARG_VALUE');
    }
    let path = href;
    if (strStarts(path, 'file://')) {
      path = strSlice(path, 7);
      try { path = decodeComponent(path); } catch (e) {
        throw hostError(NativeTypeError, 'Invalid file URL: ' + href, 'js_error', 'ERR_INVALID_URL');
      }
    }
    const dir = strEnds(path, '/');
    path = normalize(path);
    return makeRequire(dir ? join(path, 'noop.js') : path, 'require');
  }

  return freeze({
    begin, reset, entryExport, frame, compile, createRequire, compileCounts, isFile,
    transformed: (name) => preparedAt(name) !== undefined,
    resolve: (from, spec) => resolvePath(from, spec, 'require'),
  });
})
