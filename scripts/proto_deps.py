"""Make the google.rpc .proto files the contract imports resolvable, without copying them.

protos/zako/v1/executor.proto imports google/rpc/error_details.proto (the RetryInfo,
QuotaFailure and BadRequest its unary errors carry). Those files are Google's, so they
are never committed here: PyPI's googleapis-common-protos (installed with grpcio-status)
ships them, and npm's google-proto-files does for Node (examples/node).

protoc takes an include directory (`include_dir()`, used by scripts/gen_protos.py). buf
has no include flag: it reads modules inside its workspace, so `ensure()` links
build/proto-deps/google/rpc (git-ignored) to the installed package's folder, and
buf.yaml lists build/proto-deps as a second module that is neither linted nor checked
for breaking changes. `make lint`, `make gen` and tests/test_contract.py call it.

Usage: python scripts/proto_deps.py   (prints the include directory it linked)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPS = Path("build") / "proto-deps"


def include_dir() -> Path:
    """The folder holding google/rpc/*.proto of the installed googleapis-common-protos."""
    spec = importlib.util.find_spec("google.rpc")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "error_details.proto").is_file():
            return Path(location).parent.parent
    raise SystemExit(
        "google/rpc/error_details.proto not found: install googleapis-common-protos "
        "(a dependency of grpcio-status; `make setup`)"
    )


def ensure(root: Path = ROOT) -> Path:
    """Link root/build/proto-deps/google/rpc to the installed files; returns the module
    directory (root/build/proto-deps). Idempotent; a stale link is replaced."""
    target = include_dir() / "google" / "rpc"
    link = root / DEPS / "google" / "rpc"
    if link.is_symlink() and link.resolve() == target.resolve():
        return root / DEPS
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    return root / DEPS


if __name__ == "__main__":
    ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print(include_dir())
