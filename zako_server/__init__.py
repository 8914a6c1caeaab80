"""Zako server: runs JavaScript tasks from gRPC clients on a pool of V8 worker processes.

Two processes, two packages, one pipe protocol between them:

    zako_server/server/   the server process: gRPC service, admission, the worker pool
    zako_server/worker/   a worker process: V8 isolates, the JS runtime, never gRPC
    zako_server/protocol.py  the typed frames both sides exchange
    zako_server/codec.py     how they travel: length-prefixed JSON, checked on decode

This module imports nothing, so a worker pays nothing for the server when it loads its
parent package. Embedders and tests use `zako_server.server` (`Settings`,
`build_settings`, `ZakoServer`, `create_server`).
"""
