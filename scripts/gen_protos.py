"""Generate the Python stubs of the wire contract from protos/.

Why a script and committed output: `pip install -e .` then needs no build hook, and
tests/test_contract.py regenerates into a temporary folder and fails when the committed
stubs drift from protos/. protoc writes absolute imports (`from zako.v1 import ...`)
that only resolve when protos/ is a top-level package; we place the stubs inside
`zako_sdk.proto` and point those imports there, which is the only edit made.

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: zako_sdk/proto)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proto_deps import include_dir  # google/rpc, see proto_deps.py

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "zako_sdk.proto"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every .proto under protos/ and return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"-I{include_dir()}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written: list[Path] = []
    for path in sorted(out_dir.rglob("*")):
        if path.suffix not in {".py", ".pyi"}:
            continue
        text = path.read_text()
        fixed = re.sub(r"^from zako\.", f"from {PACKAGE}.zako.", text, flags=re.M)
        path.write_text(fixed)
        written.append(path)
    for folder in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "zako_sdk" / "proto"
    for f in generate(target):
        print(f.relative_to(target.parent) if f.is_relative_to(target.parent) else f)
