#!/usr/bin/env node
// The Node.js peer of issue 16: a zako.v1 Executor in @grpc/grpc-js whose tasks run on
// a Piscina worker-thread pool in node:vm contexts (worker.js). It implements what the
// unchanged Zako Python SDK needs to drive it — the Submit stream (accepted, started,
// then completed or failed per task; in-band cancels of queued tasks; the stream ends
// once the client half-closed and its tasks finished), unary Run, and Capabilities —
// so the bench runs the same client code against both servers.
//
//   node server.js --mode fresh|reused [--threads 1] [--listen 127.0.0.1:0]
//                  --include DIR      (holds google/rpc/*.proto; bench/peer.py passes
//                                      googleapis-common-protos' folder)
//
// Prints `zako-peer listening on 127.0.0.1:PORT (...)` once it serves; stops on SIGTERM.
// Like Zako it takes several tasks in one request, sends only terminal events for a task
// that asks (terminal_only), and packs the events ready together into one EventBatch for
// a client that asks (batch_events; --no-batching: Capabilities says it cannot).
//
// The server keeps its own FIFO and hands a worker thread at most one task at a time,
// so `started` means what the contract says (a worker began it), as Zako's pool does.

"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { parseArgs } = require("node:util");

const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { Piscina } = require("piscina");

const { values: args } = parseArgs({
  options: {
    listen: { type: "string", default: "127.0.0.1:0" },
    mode: { type: "string", default: "fresh" },
    threads: { type: "string", default: "1" },
    include: { type: "string" },
    protos: { type: "string", default: path.resolve(__dirname, "../../protos") },
    "no-batching": { type: "boolean", default: false },
  },
});
if (!["fresh", "reused"].includes(args.mode)) throw new Error(`--mode fresh|reused, not ${args.mode}`);
if (!args.listen.startsWith("127.0.0.1:")) throw new Error("the peer listens on 127.0.0.1 only");
const THREADS = Math.max(1, Number.parseInt(args.threads, 10) || 1);
// The contract's optional wire savings (SubmitRequest.tasks, StreamOptions.batch_events,
// Task.terminal_only) are offered as Zako offers them, so the SDK uses the same wire
// with both servers; --no-batching withholds batch_events (Capabilities says so).
const BATCHING = !args["no-batching"];

const definition = protoLoader.loadSync("zako/v1/executor.proto", {
  includeDirs: [args.protos, ...(args.include ? [args.include] : [])],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});
const zako = grpc.loadPackageDefinition(definition).zako.v1;

const pool = new Piscina({
  filename: path.join(__dirname, "worker.js"),
  minThreads: THREADS,
  maxThreads: THREADS,
  idleTimeout: 60_000,
  workerData: { mode: args.mode },
});

// ---- the queue: FIFO, at most THREADS tasks on the pool --------------------------------

const queue = [];
let head = 0;
let running = 0;

function stamp(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

function span(ns) {
  return { seconds: String(Math.floor(ns / 1e9)), nanos: ns % 1e9 };
}

function enqueue(entry) {
  queue.push(entry);
  dispatch();
  return queue.length - head - 1;
}

function dispatch() {
  while (running < THREADS && head < queue.length) {
    const entry = queue[head];
    queue[head++] = undefined;
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    if (entry.dropped) continue;
    running++;
    entry.onStart();
    const task = entry.task;
    pool
      .run({ source: task.source || "", entry: task.entry_name || "main.js", input: task.input_json })
      .then(
        (answer) => entry.onDone(answer),
        (error) => entry.onDone({ ok: false, error: { name: "Error", message: String(error) } }),
      )
      .finally(() => {
        running--;
        dispatch();
      });
  }
}

function outcomeOf(answer, acceptedAt) {
  const finishedAt = Date.now();
  const timings = {
    accepted_at: stamp(acceptedAt),
    started_at: stamp(answer.startedAt || acceptedAt),
    finished_at: stamp(finishedAt),
    queued: span(Math.max(0, (answer.startedAt || acceptedAt) - acceptedAt) * 1e6),
    run: span(answer.runNs || 0),
    warm_isolate: Boolean(answer.warm),
  };
  if (answer.ok) {
    // As the contract asks: a completed result names its worker (one thread here).
    return { completed: { result: { value_json: answer.valueJson, timings, worker_id: "thread-1" } } };
  }
  return { failed: { reason: "FAILURE_REASON_JS_ERROR", error: answer.error, timings } };
}

// ---- the RPCs ----------------------------------------------------------------------------

function submit(call) {
  const live = new Map();
  let halfClosed = false;
  let gone = false;
  let batching = false; // the client asked for batch_events
  let pending = null; // events of this turn of the event loop, sent together

  const flush = () => {
    const events = pending;
    pending = null;
    if (gone || !events) return;
    call.write(events.length === 1 ? events[0] : { batch: { events } });
  };
  const send = (taskId, event) => {
    if (gone) return;
    const message = { task_id: taskId, time: stamp(Date.now()), ...event };
    if (!batching) {
      call.write(message);
    } else if (pending === null) {
      pending = [message];
      setImmediate(flush);
    } else {
      pending.push(message);
    }
  };
  const maybeEnd = () => {
    if (halfClosed && live.size === 0 && !gone) {
      flush();
      gone = true;
      call.end();
    }
  };
  const admit = (task) => {
    const id = task.id || crypto.randomUUID();
    if (live.has(id)) {
      send("", { rejected: { code: 6, message: `task id ${id} is already in flight`, field: "task.id" } });
      return;
    }
    const acceptedAt = Date.now();
    const quiet = Boolean(task.terminal_only);
    const entry = {
      task,
      dropped: false,
      onStart: () => {
        if (!quiet) send(id, { started: { worker_id: "thread-1", worker_pid: process.pid } });
      },
      onDone: (answer) => {
        if (entry.dropped) return;
        live.delete(id);
        send(id, outcomeOf(answer, acceptedAt));
        maybeEnd();
      },
    };
    live.set(id, entry);
    // `accepted` goes first: enqueue may start the task (and send `started`) at once.
    if (!quiet) send(id, { accepted: { queue_position: queue.length - head } });
    enqueue(entry);
  };
  const cancel = (taskId, reason) => {
    const entry = live.get(taskId);
    if (!entry) return;
    // A queued task is dropped; a running one finishes (the pool cannot stop it) and its
    // outcome is replaced by the cancel.
    entry.dropped = true;
    live.delete(taskId);
    send(taskId, { cancelled: { reason: reason || "client request", was_running: false } });
    maybeEnd();
  };

  call.on("data", (request) => {
    if (request.task) admit(request.task);
    else if (request.tasks) for (const task of request.tasks.tasks || []) admit(task);
    else if (request.cancel) cancel(request.cancel.task_id, request.cancel.reason);
    else if (request.options) batching = BATCHING && Boolean(request.options.batch_events);
  });
  call.on("end", () => {
    halfClosed = true;
    maybeEnd();
  });
  const drop = () => {
    gone = true;
    for (const entry of live.values()) entry.dropped = true;
    live.clear();
  };
  call.on("cancelled", drop);
  call.on("error", drop);
}

function run(call, callback) {
  const task = call.request.task || {};
  const id = task.id || crypto.randomUUID();
  const acceptedAt = Date.now();
  enqueue({
    task,
    dropped: false,
    onStart: () => {},
    onDone: (answer) => callback(null, { task_id: id, ...outcomeOf(answer, acceptedAt) }),
  });
}

function capabilities(_call, callback) {
  callback(null, {
    limits: { max_message_bytes: String(64 << 20) },
    context_kinds: ["CONTEXT_KIND_BUILD"],
    isolate_reuse: args.mode === "reused",
    action_cache: false,
    submit_batching: BATCHING,
    versions: { server: `zako-bench-peer (${args.mode})`, v8: process.versions.v8, protocol: "zako.v1" },
  });
}

const server = new grpc.Server({
  "grpc.max_receive_message_length": 64 << 20,
  "grpc.max_send_message_length": 64 << 20,
});
server.addService(zako.Executor.service, { Submit: submit, Run: run, Capabilities: capabilities });
server.bindAsync(args.listen, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    process.stderr.write(`zako-peer: cannot listen on ${args.listen}: ${error.message}\n`);
    process.exit(1);
  }
  const host = args.listen.slice(0, args.listen.lastIndexOf(":"));
  process.stdout.write(
    `zako-peer listening on ${host}:${port} (mode ${args.mode}, ${THREADS} worker thread(s), ` +
      `event batching ${BATCHING ? "on" : "off"}, ` +
      `node ${process.versions.node}, V8 ${process.versions.v8}, ` +
      `grpc-js ${versionOf("@grpc/grpc-js")}, piscina ${versionOf("piscina")})\n`,
  );
});

// A package's version, from its package.json (piscina's `exports` do not publish it).
function versionOf(name) {
  const marker = `${path.sep}node_modules${path.sep}${name.split("/").join(path.sep)}${path.sep}`;
  const main = require.resolve(name);
  const root = main.slice(0, main.lastIndexOf(marker) + marker.length);
  return JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version;
}

function stop() {
  server.tryShutdown(() => pool.destroy().finally(() => process.exit(0)));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
