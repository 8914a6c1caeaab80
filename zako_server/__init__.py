"""Zako server: runs JavaScript tasks from gRPC clients on a pool of V8 worker processes.

Public entry points: `Settings` / `build_settings` (configuration), `ZakoServer` and
`create_server` (lifecycle, usable in-process by tests and embedders).

They are imported lazily: worker processes import `zako_server.worker`, which loads this
package first, and must not pay for (or hold) gRPC — DESIGN.md keeps gRPC out of workers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zako_server.config import Settings, build_settings
    from zako_server.server import ZakoServer, create_server

__all__ = ["Settings", "ZakoServer", "build_settings", "create_server"]

_HOMES = {
    "Settings": "zako_server.config",
    "build_settings": "zako_server.config",
    "ZakoServer": "zako_server.server",
    "create_server": "zako_server.server",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'zako_server' has no attribute {name!r}")
