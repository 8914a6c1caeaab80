// The smallest Zako program. A task's entry module is CommonJS: `module.exports` is a
// function called with (input, context) — awaited if it returns a Promise — and what it
// returns comes back to the client as JSON.
//
//   input    the task's input_json, parsed (null when the client sent none)
//   context  { kind, taskId, labels, systemAccess }
//
// console output is captured and streamed back as log events.
// Try it:  zako run examples/hello.js --input '{"name":"zako"}'

module.exports = (input, context) => {
  const name = (input && input.name) || "world";
  console.log(`greeting ${name} from task ${context.taskId}`);
  return { greeting: `hello, ${name}`, kind: context.kind };
};
