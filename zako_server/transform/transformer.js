/*
 * The transform stage's JavaScript: one call per file, in a V8 isolate of its own (never
 * a task's). Given a file's text, its extension and its package's "type", it answers
 * {esm, code, map} or {error}:
 *
 * - ES modules and TypeScript/TSX/JSX go through sucrase (types erased, JSX compiled,
 *   import/export turned into require/exports; lines kept). Its source map's `mappings`
 *   (base64 VLQ, compact) is `map`; the worker's modules.js decodes it only when a stack
 *   frame in that file needs it.
 * - CommonJS is left as it is, except for what only a module loader can provide:
 *   es-module-lexer (the lexer Vite and Node's tooling use) finds `import(` and
 *   `import.meta` tokens, which are renamed in place to the wrapper's `__zimp(` and
 *   `__zako_meta` (same lengths, so no position moves).
 * - A file that does not parse answers {error: {message, line, column}} (original
 *   positions); the worker throws it only if a task loads the file.
 */
(function makeTransformer(sucrase, lexer, parser, cjsLexer) {
  'use strict';

  function position(source, pos) {
    let line = 1;
    let last = -1;
    for (let i = 0; i < pos && i < source.length; i++) {
      if (source.charCodeAt(i) === 10) { line++; last = i; }
    }
    return { line, column: pos - last };
  }

  // Renames `import(` to `__zimp(` and `import.meta` to `__zako_meta`, same lengths.
  function rename(code, lexed) {
    const imports = lexed[0];
    let out = '';
    let at = 0;
    for (let i = 0; i < imports.length; i++) {
      const imp = imports[i];
      let replacement = null;
      if (imp.d === -2) replacement = '__zako_meta';
      else if (imp.d > -1) replacement = '__zimp';
      if (replacement === null || imp.ss < at) continue;
      out += code.slice(at, imp.ss) + replacement;
      at = imp.ss + (imp.d === -2 ? 11 : 6);
    }
    return out + code.slice(at);
  }

  // `export { x as 'module.exports' }` (string export names, ES2022): sucrase would write
  // `exports.'module.exports'`, so each such name is first replaced, in place and at the
  // same length, by an identifier; `names` maps it back (modules.js restores the name).
  function placeholders(source, lexed) {
    const names = {};
    let out = '';
    let at = 0;
    const exps = lexed === null ? [] : lexed[1];
    for (let i = 0; i < exps.length; i++) {
      const ex = exps[i];
      const quote = source[ex.s];
      if ((quote !== "'" && quote !== '"') || ex.s < at) continue;
      const length = ex.e - ex.s;
      let id = '$Z' + i;
      if (id.length > length) id = ('$' + i).slice(0, length);
      while (id.length < length) id += '$';
      names[id] = ex.n;
      out += source.slice(at, ex.s) + id;
      at = ex.e;
    }
    return at === 0 ? null : { source: out + source.slice(at), names };
  }

  // An ES module has no `require`, `exports` or `module`, so it may declare its own (e.g.
  // `const require = createRequire(import.meta.url)`); the CommonJS sucrase writes uses
  // those names, so the module's own are renamed first, same length, using sucrase's
  // parser's scope roles (references and declarations only: never property names).
  const RESERVED = { require: '$requir', exports: '$export', module: '$modul' };
  const DECLARES = [2, 3, 4, 9]; // top-level, function, block scoped, import declarations
  const RENAMES = [0, 1, 2, 3, 4, 9, 11]; // those, plus (export/import) accesses
  function ownBindings(source, typescript, jsx) {
    let file;
    try { file = parser.parse(source, jsx, typescript, false); } catch (e) { return source; }
    const tokens = file.tokens;
    let declared = false;
    for (let i = 0; i < tokens.length && !declared; i++) {
      const t = tokens[i];
      if (DECLARES.indexOf(t.identifierRole) >= 0 && RESERVED[source.slice(t.start, t.end)] !== undefined) declared = true;
    }
    if (!declared) return source;
    let out = '';
    let at = 0;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      const text = source.slice(t.start, t.end);
      if (RENAMES.indexOf(t.identifierRole) < 0 || !Object.prototype.hasOwnProperty.call(RESERVED, text)) continue;
      out += source.slice(at, t.start) + RESERVED[text];
      at = t.end;
    }
    return out + source.slice(at);
  }

  // sucrase erases TypeScript namespaces, also those that hold values; rather than let
  // `N.x` be undefined at run time, such a namespace is an error at its position.
  const VALUES = ['const', 'let', 'var', 'function', 'class', 'enum'];
  function valueNamespace(source, jsx) {
    let tokens;
    try { tokens = parser.parse(source, jsx, true, false).tokens; } catch (e) { return null; }
    const text = (t) => source.slice(t.start, t.end);
    for (let i = 0; i + 2 < tokens.length; i++) {
      const word = text(tokens[i]);
      if (word !== 'namespace' && word !== 'module') continue;
      if (i > 0 && text(tokens[i - 1]) === 'declare') continue;
      let j = i + 1;
      while (j < tokens.length && text(tokens[j]) !== '{' && j < i + 16) j++;
      if (j >= tokens.length || text(tokens[j]) !== '{') continue;
      let depth = 0;
      for (let k = j; k < tokens.length; k++) {
        const t = text(tokens[k]);
        if (t === '{') depth++;
        else if (t === '}' && --depth === 0) break;
        else if (depth === 1 && t === 'export' && k + 1 < tokens.length && VALUES.indexOf(text(tokens[k + 1])) >= 0) {
          if (text(tokens[k + 1]) === 'const' && k + 2 < tokens.length && text(tokens[k + 2]) === 'enum') continue;
          return tokens[i].start;
        }
      }
    }
    return null;
  }

  function lexOrNull(code) {
    try { return lexer.parse(code); } catch (e) { return null; }
  }

  function failure(source, e) {
    const pos = typeof e.pos === 'number' ? e.pos : typeof e.idx === 'number' ? e.idx : null;
    const where = pos === null ? { line: null, column: null } : position(source, pos);
    // sucrase says "Error transforming <file>: <message> (line:column)"; the file and
    // position are reported as fields (answers are cached by content, not by name).
    let message = '' + (e && e.message);
    const named = message.indexOf(': ');
    if (message.startsWith('Error transforming ') && named >= 0) message = message.slice(named + 2);
    message = message.replace(/ \(\d+:\d+\)$/, '');
    return { error: { name: 'SyntaxError', message, line: where.line, column: where.column } };
  }

  function runSucrase(name, source, transforms) {
    const result = sucrase.transform(source, {
      transforms,
      filePath: name,
      disableESTransforms: true,
      preserveDynamicImport: true,
      sourceMapOptions: { compiledFilename: name },
      production: true,
    });
    return result;
  }

  // ext: '.js', '.mjs', '.cjs', '.ts', '.mts', '.cts', '.tsx', '.jsx'; type: the nearest
  // package.json's "type" ('module', 'commonjs' or '' when absent).
  function transform(name, source, ext, type) {
    try {
      const typescript = ext === '.ts' || ext === '.mts' || ext === '.cts' || ext === '.tsx';
      const jsx = ext === '.tsx' || ext === '.jsx';
      let esm;
      if (ext === '.mjs' || ext === '.mts') esm = true;
      else if (ext === '.cjs' || ext === '.cts') esm = false;
      else if (type === 'module') esm = true;
      else if (type === 'commonjs') esm = false;
      else esm = null; // no "type": as Node, decide by the syntax
      if (typescript) {
        const at = valueNamespace(source, jsx);
        if (at !== null) {
          const where = position(source, at);
          return { error: { name: 'SyntaxError', line: where.line, column: where.column,
            message: 'TypeScript namespaces that hold values are not supported (the transform erases them); use a module or an object' } };
        }
      }
      const base = [];
      if (typescript) base.push('typescript');
      if (jsx) base.push('jsx');
      if (esm === null) {
        if (base.length === 0) {
          const lexed = lexOrNull(source);
          esm = lexed !== null && lexed[3] === true;
        } else {
          const plain = runSucrase(name, source, base).code;
          const lexed = lexOrNull(plain);
          esm = lexed !== null && lexed[3] === true;
        }
      }
      if (!esm && base.length === 0) {
        const lexed = lexOrNull(source);
        const answer = { esm: false };
        // A CommonJS file the lexer cannot read is left for V8 to judge when loaded.
        if (lexed !== null) {
          const renamed = rename(source, lexed);
          if (renamed !== source) answer.code = renamed;
        }
        // The names an ES module importing it gets, as Node finds them (cjs-module-lexer).
        try {
          const found = cjsLexer.parse(source);
          answer.cjs = { exports: found.exports, reexports: found.reexports };
        } catch (e) {
          answer.cjs = { exports: [], reexports: [] };
        }
        return answer;
      }
      const transforms = esm ? base.concat(['imports']) : base;
      const own = esm ? ownBindings(source, typescript, jsx) : source;
      const renamed = esm && base.length === 0 ? placeholders(own, lexOrNull(own)) : null;
      const result = runSucrase(name, renamed === null ? own : renamed.source, transforms);
      const lexed = lexOrNull(result.code);
      const code = lexed === null ? result.code : rename(result.code, lexed);
      const answer = { esm, code, map: result.sourceMap.mappings };
      if (renamed !== null) answer.names = renamed.names;
      return answer;
    } catch (e) {
      return failure(source, e);
    }
  }

  return transform;
})
