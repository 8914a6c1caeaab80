#!/usr/bin/env node
// Issue 15's baseline: `ts.transpileModule` called again and again in one warm Node
// process, the best a build tool that keeps Node running could do.
//
//   node transpile_warm.js TREE INPUT_JSON_FILE COUNT SECONDS [warm|fresh]
//
// TREE is the directory holding node_modules/typescript (the very tree the bench sends
// to Zako), INPUT_JSON_FILE the task's input (a JSON string: the TypeScript source).
// Loads typescript once, makes one call to warm it up (timed apart: it compiles the
// compiler), then COUNT calls or SECONDS, whichever ends first, each timed. Prints one
// JSON line: load and first-call ms, each call's ms, and the output of the last call
// (the bench checks that Zako returns the same text).
//
// `fresh`: the same calls under Zako's hermetic rule, a new instance of the typescript
// module for every call (its file compiled once, as Zako's workers keep it compiled,
// then evaluated again per call): what a Node server that gives each task fresh module
// instances would pay.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const [tree, inputFile, countText, secondsText] = process.argv.slice(2);
const source = JSON.parse(fs.readFileSync(inputFile, "utf8"));
const count = Number.parseInt(countText, 10);
const seconds = Number.parseFloat(secondsText);

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

const fresh = process.argv[6] === "fresh";
let t0 = process.hrtime.bigint();
const modulePath = require.resolve(path.join(path.resolve(tree), "node_modules", "typescript"));
let ts = require(modulePath);
const loadMs = ms(t0);
// The module's text compiled once into its CommonJS wrapper (fresh mode only).
const wrapper = fresh
  ? new vm.Script(
      `(function (exports, require, module, __filename, __dirname) {${fs.readFileSync(modulePath, "utf8")}\n})`,
      { filename: modulePath },
    ).runInThisContext()
  : null;
const instance = () => {
  const module = { exports: {} };
  wrapper.call(module.exports, module.exports, require, module, modulePath, path.dirname(modulePath));
  return module.exports;
};
// The same call the Zako task makes (bench/caches.py, TS_ENTRY).
const transpile = (text) => {
  if (fresh) ts = instance();
  return ts.transpileModule(text, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 },
  }).outputText;
};

t0 = process.hrtime.bigint();
let output = transpile(source);
const firstMs = ms(t0);
const calls = [];
const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
while (calls.length < count && process.hrtime.bigint() < deadline) {
  t0 = process.hrtime.bigint();
  output = transpile(source);
  calls.push(ms(t0));
}
process.stdout.write(
  JSON.stringify({ node: process.versions.node, version: ts.version, fresh, loadMs, firstMs, calls, output }) + "\n",
);
