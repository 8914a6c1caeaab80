"""The server process: gRPC in front, admission, and the pool that supervises workers.

    service ─▶ engine ─▶ admission ─▶ pool ─▶ worker_handle ══pipe══▶ zako_server.worker
    (gRPC)     (tasks)   (quota,      (which    (one child process:
                         queue)       worker)    frames, watchdog)

V8 never runs in this process; it only talks to workers through `zako_server.protocol`.
"""

from zako_server.server.app import ZakoServer, create_server
from zako_server.server.config import build_settings
from zako_server.server.settings import Settings

__all__ = ["Settings", "ZakoServer", "build_settings", "create_server"]
