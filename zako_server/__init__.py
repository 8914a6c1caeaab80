"""Zako server: runs JavaScript tasks from gRPC clients on a pool of V8 worker processes.

Public entry points: `Settings` / `build_settings` (configuration), `ZakoServer` and
`create_server` (lifecycle, usable in-process by tests and embedders).
"""

from zako_server.config import Settings, build_settings
from zako_server.server import ZakoServer, create_server

__all__ = ["Settings", "ZakoServer", "build_settings", "create_server"]
