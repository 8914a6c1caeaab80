"""Run Helm (the helm-python-sdk library, Helm v4 compiled into the wheel) on one request.

The tests start this as a subprocess, so a hung or crashing native call is bounded by the
subprocess timeout, and the Go runtime never loads into the pytest process (which forks
and signals V8 workers in other tests).

stdin:  {"op": "render" | "lint" | "versions", "chart": PATH, "values": {...} | null,
         "set": ["a.b=1", ...], ...options}
stdout: {"ok": true, "result": ...} or {"ok": false, "error": CLASS, "message": TEXT}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into `base`, like several `--set` flags in a row."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def values_of(request: dict[str, Any]) -> dict[str, Any] | None:
    values = request.get("values")
    for expression in request.get("set", []):
        # `helm --set` parsing: numbers become integers, true/false booleans.
        values = merge(values or {}, helm.parse_set_string(expression))
    return values


def handle(request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "versions":
        return {
            "helm": helm.helm_sdk_version(),
            "helm_c": helm.helm_c_version(),
            "library": str(helm.library_path),
            "package": str(Path(helm.__file__).parent),
        }
    if op == "render":
        with helm.Chart.load(request["chart"]) as chart:
            return chart.render(
                values_of(request),
                name=request.get("name", "zako-test"),
                namespace=request.get("namespace", "zako"),
                is_install=True,
            )
    if op == "lint":
        return helm.lint(
            request["chart"],
            values_of(request),
            strict=True,
            namespace=request.get("namespace", "zako"),
            kube_version=request.get("kube_version"),
        )
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    request = json.load(sys.stdin)
    try:
        reply = {"ok": True, "result": handle(request)}
    except helm.HelmError as exc:
        reply = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    json.dump(reply, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
