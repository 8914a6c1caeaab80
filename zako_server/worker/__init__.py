"""The worker process: V8 isolates running tasks, driven by the server over pipes.

Everything in this package runs in a child process that the server's pool starts with
`python -m zako_server.worker`. It imports mini-racer, psutil and the shared
`zako_server.protocol`, never gRPC, protobuf or the SDK: a worker holds no network state
and pays nothing to load it (tests/test_layout.py checks this in a clean
interpreter).
"""
