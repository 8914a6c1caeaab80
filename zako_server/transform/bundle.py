"""The JavaScript a transform isolate starts with: sucrase, es-module-lexer, transformer.js.

The npm packages are installed into zako_server/jsdeps/node_modules by `make setup`;
nothing is copied into the repository. Every `.js` file of the packages sucrase needs is
sent as text into a tiny CommonJS loader (relative paths and package `main`s only, which
is all these packages use); es-module-lexer ships as an ES module, so sucrase itself
turns it into CommonJS first.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

# What sucrase's transform path requires (its CLI, register hook and ESM twin are left out).
PACKAGES = (
    "sucrase",
    "lines-and-columns",
    "ts-interface-checker",
    "@jridgewell/gen-mapping",
    "@jridgewell/sourcemap-codec",
    "@jridgewell/trace-mapping",
    "@jridgewell/resolve-uri",
    "cjs-module-lexer",
)
_SKIP = (
    "sucrase/dist/esm/",
    "sucrase/dist/types/",
    "sucrase/dist/cli.js",
    "sucrase/dist/register.js",
)
LEXER = "es-module-lexer/dist/lexer.asm.js"


class TransformUnavailable(RuntimeError):
    """zako_server/jsdeps/node_modules is not installed (run `make setup`)."""


def node_modules() -> Path:
    return Path(__file__).resolve().parents[1] / "jsdeps" / "node_modules"


def installed() -> bool:
    """Are sucrase and es-module-lexer where `make setup` puts them?"""
    root = node_modules()
    return (root / "sucrase" / "package.json").is_file() and (root / LEXER).is_file()


_LOADER = r"""
(function (files, mains, lexerSource, makeTransformer) {
  const cache = {};
  const dirname = (p) => p.slice(0, p.lastIndexOf('/'));
  const normalize = (p) => {
    const out = [];
    for (const part of p.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') out.pop(); else out.push(part);
    }
    return out.join('/');
  };
  const find = (p) => [p, p + '.js', p + '/index.js'].find((c) => c in files);
  function load(path) {
    if (cache[path]) return cache[path].exports;
    const module = { exports: {} };
    cache[path] = module;
    const text = '(function (exports, require, module) {' + files[path] + '\n})';
    const fn = (0, eval)(text + '\n//# sourceURL=' + path);
    fn(module.exports, (spec) => requireFrom(path, spec), module);
    return module.exports;
  }
  function requireFrom(from, spec) {
    const target = spec.startsWith('.') ? find(normalize(dirname(from) + '/' + spec)) : mains[spec];
    if (target === undefined) throw new Error('transform bundle: no ' + spec + ' from ' + from);
    return load(target);
  }
  const sucrase = load(mains.sucrase);
  // The asm.js lexer looks for its heap constructors on `global` (Node's name).
  if (typeof global === 'undefined') globalThis.global = globalThis;
  const lexerModule = { exports: {} };
  const lexerCjs = sucrase.transform(lexerSource, { transforms: ['imports'] }).code;
  (0, eval)('(function (exports, module) {' + lexerCjs + '\n})')(lexerModule.exports, lexerModule);
  const lexer = lexerModule.exports;
  const parser = load('sucrase/dist/parser/index.js');
  return makeTransformer(sucrase, lexer, parser, load(mains['cjs-module-lexer']));
})
"""


def _main(root: Path, package: str) -> str:
    meta = json.loads((root / package / "package.json").read_text(encoding="utf-8"))
    main = str(meta.get("main") or "index.js").removeprefix("./")
    for candidate in (main, main + ".js", main + "/index.js"):
        if (root / package / candidate).is_file():
            return f"{package}/{candidate}"
    raise TransformUnavailable(f"{package}'s main {main!r} is not installed under {root}")


@cache
def script() -> str:
    """One eval's text that defines `__zakoTransform(name, source, ext, type)`."""
    root = node_modules()
    if not (root / "sucrase").is_dir() or not (root / LEXER).is_file():
        raise TransformUnavailable(f"sucrase or es-module-lexer missing under {root} (make setup)")
    files: dict[str, str] = {}
    mains: dict[str, str] = {}
    for package in PACKAGES:
        mains[package] = _main(root, package)
        for path in sorted((root / package).rglob("*.js")):
            rel = path.relative_to(root).as_posix()
            if not rel.startswith(_SKIP) and "/node_modules/" not in rel:
                files[rel] = path.read_text(encoding="utf-8")
    transformer = resources.files(__package__).joinpath("transformer.js").read_text("utf-8")
    lexer = (root / LEXER).read_text(encoding="utf-8")
    args = ",".join(json.dumps(v, ensure_ascii=True) for v in (files, mains, lexer))
    return f"var __zakoTransform = ({_LOADER})({args},{transformer});"
