#!/usr/bin/env bash
# Talk to a Zako server with nothing but grpcurl: the server supports reflection, so no
# .proto files are needed. `make setup` installs grpcurl as .venv/bin/grpcurl.
#
#   ZAKO_TARGET=127.0.0.1:50051 examples/grpcurl.sh
set -euo pipefail

TARGET="${ZAKO_TARGET:-127.0.0.1:50051}"
HERE="$(cd "$(dirname "$0")" && pwd)"
GRPCURL="${GRPCURL:-$(command -v grpcurl || echo "$HERE/../.venv/bin/grpcurl")}"
g() { "$GRPCURL" -plaintext -max-time 30 "$@"; }

echo "# services"
g "$TARGET" list

echo "# health"
g "$TARGET" grpc.health.v1.Health/Check

echo "# the contract, from the server"
g "$TARGET" describe zako.v1.Executor

echo "# run one task (unary Run); input_json is JSON text inside the JSON request"
g -d '{"task":{"source":"module.exports = (x) => x.n + 1","input_json":"{\"n\":41}"}}' \
  "$TARGET" zako.v1.Executor/Run

echo "# two tasks on one Submit stream (grpcurl sends each JSON object as one message)"
g -d @ "$TARGET" zako.v1.Executor/Submit <<'JSON'
{"task": {"id": "sh-1", "source": "module.exports = (x) => x * 2", "input_json": "21"}}
{"task": {"id": "sh-2", "source": "module.exports = (x, ctx) => ctx.kind", "context": "CONTEXT_KIND_RULE"}}
JSON
