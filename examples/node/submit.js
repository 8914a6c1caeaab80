#!/usr/bin/env node
// Submit a JavaScript file to a Zako server from Node, over the bidi `Submit` stream.
//
//   npm install
//   node submit.js ../hello.js '{"name":"node"}'
//   node submit.js --count 20 ../hello.js '{"name":"node"}'
//   node submit.js --unary ../hello.js '{"name":"node"}'    (one Run call per task)
//
// Every server event is printed as one JSON line on stdout (the SubmitResponse message,
// field names as in the .proto, plus "event": the name of the event that is set). The
// last line is {"summary": {...}, "results": [...]}. Exit status: 0 when every task
// completed, 1 when some task failed, was cancelled or was rejected, 2 on bad usage,
// 3 when the stream broke or the timeout ran out.
//
// With --unary each task is one `Run` call. A task the server turns away fails the
// call, and the status carries google.rpc error details (the contract's
// RpcErrorDetails): they are decoded here from the `grpc-status-details-bin` trailer,
// and the result line shows them (bad_request naming the field, retry_delay_seconds,
// quota_failure), as the stream's Rejected event shows field, retry_after and quota.

"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { parseArgs } = require("node:util");

const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");
// Google's google/rpc/*.proto, which executor.proto imports: from npm, never copied.
const GOOGLE_PROTOS = require("google-proto-files").getProtoPath("..");

// The contract, loaded at run time: nothing is generated. Copying this script elsewhere?
// Point ZAKO_PROTO_ROOT at a copy of the repository's protos/ folder.
const PROTO_ROOT = process.env.ZAKO_PROTO_ROOT || path.resolve(__dirname, "../../protos");
const PROTO_FILE = "zako/v1/executor.proto";

const USAGE = `usage: node submit.js [options] FILE [INPUT_JSON]

  FILE                   the task's entry module (CommonJS, sets module.exports)
  INPUT_JSON             the task's input as JSON text (default: none, i.e. null)

  -t, --target HOST:PORT server address (default: $ZAKO_TARGET or 127.0.0.1:50051)
  -n, --count N          submit N copies of the task on one stream (default: 1)
  -c, --context KIND     package | build | rule | toolchain | config (default: build)
      --timeout SECONDS  give up after this long (default: 60)
  -u, --unary            one Run call per task instead of one Submit stream
  -q, --quiet            print only the summary line
  -h, --help             show this help`;

const TERMINAL = new Set(["completed", "failed", "cancelled", "rejected"]);

function usageError(message) {
  process.stderr.write(`submit.js: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        target: { type: "string", short: "t" },
        count: { type: "string", short: "n", default: "1" },
        context: { type: "string", short: "c", default: "build" },
        timeout: { type: "string", default: "60" },
        quiet: { type: "boolean", short: "q", default: false },
        unary: { type: "boolean", short: "u", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    usageError(err.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (positionals.length < 1 || positionals.length > 2) {
    usageError("expected FILE and optionally INPUT_JSON");
  }
  const [file, inputJson = ""] = positionals;
  if (inputJson !== "") {
    try {
      JSON.parse(inputJson);
    } catch (err) {
      usageError(`INPUT_JSON is not valid JSON: ${err.message}`);
    }
  }
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) usageError("--count must be a positive integer");
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) usageError("--timeout must be a positive number of seconds");
  let source;
  try {
    source = fs.readFileSync(file, "utf8");
  } catch (err) {
    usageError(`cannot read ${file}: ${err.message}`);
  }
  return {
    target: values.target || process.env.ZAKO_TARGET || "127.0.0.1:50051",
    // Module names allow letters, digits and ._-/@ only.
    entryName: path.basename(file).replace(/[^A-Za-z0-9._\-/@]/g, "_"),
    source,
    inputJson,
    count,
    context: `CONTEXT_KIND_${values.context.toUpperCase()}`,
    timeoutMs: timeout * 1000,
    quiet: values.quiet,
    unary: values.unary,
  };
}

function loadExecutor() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT, GOOGLE_PROTOS],
    keepCase: true, // field names exactly as in the .proto: task_id, value_json, ...
    longs: String, // int64 / uint64 as decimal strings, never rounded
    enums: String, // enum values by name, e.g. "FAILURE_REASON_TIMEOUT"
    defaults: false,
    oneofs: true, // adds e.g. `event: "completed"` naming the member that is set
  });
  return grpc.loadPackageDefinition(definition).zako.v1.Executor;
}

// google.rpc.Status and the detail types, to decode a failed call's status details.
const ERROR_TYPES = protobuf.loadSync(
  ["status.proto", "error_details.proto"].map((f) => path.join(GOOGLE_PROTOS, "google", "rpc", f)),
);

// The google.rpc error details of a failed call (see RpcErrorDetails in the .proto).
function errorDetails(err) {
  const raw = err.metadata && err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return {};
  const status = ERROR_TYPES.lookupType("google.rpc.Status").decode(raw);
  const details = {};
  for (const any of status.details) {
    const name = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
    const body = ERROR_TYPES.lookupType(name).toObject(ERROR_TYPES.lookupType(name).decode(any.value), {
      longs: Number,
    });
    if (name === "google.rpc.BadRequest") {
      details.bad_request = body.fieldViolations.map((v) => ({ field: v.field, description: v.description }));
    } else if (name === "google.rpc.RetryInfo") {
      const delay = body.retryDelay || {};
      details.retry_delay_seconds = (delay.seconds || 0) + (delay.nanos || 0) / 1e9;
    } else if (name === "google.rpc.QuotaFailure") {
      details.quota_failure = body.violations.map((v) => ({ subject: v.subject, description: v.description }));
    }
  }
  return details;
}

// --unary: each task is one Run call; its outcome is shaped as a stream's terminal event.
function runUnary(client, options, ids) {
  const deadline = Date.now() + options.timeoutMs;
  return Promise.all(
    ids.map(
      (id) =>
        new Promise((resolve) => {
          const task = {
            id,
            source: options.source,
            entry_name: options.entryName,
            input_json: options.inputJson,
            context: options.context,
          };
          client.Run({ task }, { deadline }, (err, response) => {
            let message;
            if (err) {
              const code = grpc.status[err.code] || String(err.code);
              message = { task_id: id, event: "rejected", rejected: { code, message: err.details } };
              Object.assign(message.rejected, errorDetails(err));
            } else {
              message = { task_id: id, event: response.outcome, [response.outcome]: response[response.outcome] };
            }
            if (!options.quiet) process.stdout.write(`${JSON.stringify(message)}\n`);
            resolve([id, message]);
          });
        }),
    ),
  );
}

function describeOutcome(taskId, message) {
  const outcome = { task_id: taskId, outcome: message ? message.event : "none" };
  if (!message) return outcome;
  const body = message[message.event] || {};
  switch (message.event) {
    case "completed": {
      const text = (body.result && body.result.value_json) || "null";
      outcome.value = JSON.parse(text);
      break;
    }
    case "failed":
      outcome.reason = body.reason;
      outcome.error = body.error && { name: body.error.name, message: body.error.message };
      break;
    case "cancelled":
      outcome.reason = body.reason;
      break;
    case "rejected":
      outcome.code = body.code;
      outcome.message = body.message;
      for (const key of ["field", "quota", "bad_request", "retry_delay_seconds", "quota_failure"]) {
        if (body[key] !== undefined && body[key] !== "") outcome[key] = body[key];
      }
      break;
  }
  return outcome;
}

async function main() {
  const options = parseCommandLine(process.argv.slice(2));
  const Executor = loadExecutor();
  const client = new Executor(options.target, grpc.credentials.createInsecure());
  const prefix = `node-${crypto.randomUUID().slice(0, 8)}`;
  const ids = Array.from({ length: options.count }, (_, i) => `${prefix}-${i + 1}`);
  if (options.unary) {
    const outcomes = new Map(await runUnary(client, options, ids));
    const results = ids.map((id) => describeOutcome(id, outcomes.get(id)));
    const count = (name) => results.filter((r) => r.outcome === name).length;
    const summary = {
      target: options.target,
      tasks: ids.length,
      completed: count("completed"),
      failed: count("failed"),
      cancelled: count("cancelled"),
      rejected: count("rejected"),
    };
    summary.ok = summary.completed === ids.length;
    process.stdout.write(`${JSON.stringify({ summary, results })}\n`);
    process.exitCode = summary.ok ? 0 : 1;
    client.close();
    return;
  }
  const call = client.Submit({ deadline: Date.now() + options.timeoutMs });
  const terminal = new Map(); // task id -> its terminal SubmitResponse
  const allDone = () => ids.every((id) => terminal.has(id));
  let finished = false;
  let graceTimer;
  let hardStop;

  function finish(code) {
    if (finished) return;
    finished = true;
    clearTimeout(graceTimer);
    clearTimeout(hardStop);
    const results = ids.map((id) => describeOutcome(id, terminal.get(id)));
    const count = (name) => results.filter((r) => r.outcome === name).length;
    const summary = {
      target: options.target,
      tasks: ids.length,
      completed: count("completed"),
      failed: count("failed"),
      cancelled: count("cancelled"),
      rejected: count("rejected"),
      unfinished: count("none"),
    };
    summary.ok = summary.completed === ids.length;
    process.stdout.write(`${JSON.stringify({ summary, results })}\n`);
    process.exitCode = code !== undefined ? code : summary.ok ? 0 : 1;
    call.cancel(); // a no-op when the server already ended the stream
    client.close();
  }

  // A safety net on top of the call deadline, should the transport itself hang.
  hardStop = setTimeout(() => {
    process.stderr.write(`submit.js: no answer within ${options.timeoutMs / 1000}s\n`);
    finish(3);
  }, options.timeoutMs + 5000);

  call.on("data", (message) => {
    if (!options.quiet) process.stdout.write(`${JSON.stringify(message)}\n`);
    if (TERMINAL.has(message.event) && !terminal.has(message.task_id)) {
      terminal.set(message.task_id, message);
    }
    if (allDone() && !graceTimer) {
      // Every task is done. The server now ends the stream (we half-closed after
      // sending); don't wait long for that.
      graceTimer = setTimeout(() => finish(), 2000);
    }
  });
  // The call's outcome arrives as "status"; a non-OK status is also emitted as "error",
  // which must have a listener or Node would throw it.
  call.on("error", () => {});
  call.on("status", (status) => {
    if (finished) return;
    if (status.code !== grpc.status.OK && !allDone()) {
      const code = grpc.status[status.code] || String(status.code);
      process.stderr.write(`${JSON.stringify({ error: { code, details: status.details } })}\n`);
      finish(3);
      return;
    }
    finish();
  });

  for (const id of ids) {
    const request = {
      task: {
        id,
        source: options.source,
        entry_name: options.entryName,
        input_json: options.inputJson,
        context: options.context,
      },
    };
    if (!call.write(request)) {
      await new Promise((resolve) => call.once("drain", resolve));
    }
    if (finished) return;
  }
  call.end(); // half-close: no more tasks; the server finishes these and ends the stream
}

main().catch((err) => {
  process.stderr.write(`submit.js: ${err.stack || err}\n`);
  process.exit(3);
});
