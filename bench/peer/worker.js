// One task in a node:vm context, on a Piscina worker thread: the peer's whole engine.
//
// The peer is what a Node shop would build instead of Zako (issue 16), so it does what
// such a server does and nothing more: the task's CommonJS entry is compiled in a vm
// context and its export is called with the parsed input. Two modes, chosen per pool
// (workerData.mode):
//   fresh   a new vm context per task (tasks cannot see each other's globals);
//   reused  one context per worker thread, made once (globals leak between tasks).
// No time or memory limit per task, no module tree, no hermetic globals: those are
// what Zako adds, and what the comparison prices.

"use strict";

const vm = require("node:vm");
const { workerData } = require("piscina");

const MODE = workerData && workerData.mode === "reused" ? "reused" : "fresh";
const shared = MODE === "reused" ? vm.createContext({}) : null;

function errorOf(error) {
  if (error instanceof Error || (error && typeof error === "object" && "message" in error)) {
    return {
      name: String(error.name || "Error"),
      message: String(error.message),
      stack: String(error.stack || ""),
    };
  }
  return { name: "Error", message: String(error), stack: "" };
}

// Piscina calls this with one task; the answer is plain data for the main thread.
module.exports = async function runTask({ source, entry, input }) {
  const startedAt = Date.now();
  const t0 = process.hrtime.bigint();
  try {
    const context = shared || vm.createContext({});
    const wrapper = vm.runInContext(
      `(function (exports, require, module, __filename, __dirname) {${source}\n})`,
      context,
      { filename: entry },
    );
    const module = { exports: {} };
    wrapper(module.exports, undefined, module, entry, ".");
    let value = module.exports;
    if (typeof value === "function") {
      value = value(JSON.parse(input || "null"), { kind: "build", labels: {} });
    }
    if (value && typeof value.then === "function") {
      value = await value;
    }
    const text = JSON.stringify(value);
    return {
      ok: true,
      valueJson: text === undefined ? "null" : text,
      startedAt,
      runNs: Number(process.hrtime.bigint() - t0),
      warm: shared !== null,
    };
  } catch (error) {
    return {
      ok: false,
      error: errorOf(error),
      startedAt,
      runNs: Number(process.hrtime.bigint() - t0),
      warm: shared !== null,
    };
  }
};
