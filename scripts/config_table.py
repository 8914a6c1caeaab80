"""Rewrite the README's configuration table from zako_server.server.options.OPTIONS.

The table is generated so that it cannot drift from the flags; tests/server/
test_heuristics.py fails when an option is missing from it. Run: python scripts/config_table.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from zako_server.server.options import OPTIONS
from zako_server.server.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
HEAD = "| Flag | Environment | Default | Meaning |"
SPECIAL = {
    "max_workers": "half the effective CPUs, ≥ 1",
    "queue_capacity": "max(2 x max_workers, 1024)",
    "tenant_max_queued": "queue_capacity",
    "cas_bytes": "10% of effective memory, in [4 MiB, 4 GiB]",
}


def table() -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    rows = [HEAD, "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        default = defaults[option.name]
        shown = SPECIAL.get(option.name) or ("(none)" if default in ("", ()) else repr(default))
        rows.append(f"| `{option.flag}` | `{option.env}` | {shown} | {option.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    text = README.read_text()
    start = text.index(HEAD)
    end = text.index("\n\n", start)
    README.write_text(text[:start] + table() + text[end:])
