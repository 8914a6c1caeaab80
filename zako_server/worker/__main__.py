"""`python -m zako_server.worker`: how the pool starts a worker process (see process.py).

The time zone and locale are pinned before V8 starts: V8 and its ICU read TZ and
LC_ALL/LANG from the environment once, and a hermetic task's `new Date().toString()`,
`toLocaleString()` and `Intl` output must not depend on the host the worker runs on
(docs/runtime.md). Every context runs in UTC with the en-US locale.

`--cpu N` pins the process to CPU N, also before V8 starts: its threads (the event loop
and each isolate's, which hand every eval to each other) inherit the mask of the thread
that creates them (server/worker_set.py says why the pool pins workers).
`--brief-wait S` is the server's worker_brief_wait (worker/evaluation.py).
"""

import argparse
import os
import sys

os.environ["TZ"] = "UTC"
os.environ["LC_ALL"] = "en_US.UTF-8"
os.environ["LANG"] = "en_US.UTF-8"
os.environ.pop("LANGUAGE", None)

parser = argparse.ArgumentParser(prog="python -m zako_server.worker")
parser.add_argument("--cpu", type=int, default=None)
parser.add_argument("--brief-wait", type=float, default=None)
args = parser.parse_args()

if args.cpu is not None and hasattr(os, "sched_setaffinity"):
    try:
        os.sched_setaffinity(0, {args.cpu})
    except OSError as exc:  # not a CPU this process may use: run unpinned
        print(f"zako worker: could not pin to CPU {args.cpu}: {exc}", file=sys.stderr)

from zako_server.worker.evaluation import BRIEF_WAIT_S  # noqa: E402 - after the pinning
from zako_server.worker.process import main  # noqa: E402

sys.exit(main(BRIEF_WAIT_S if args.brief_wait is None else args.brief_wait))
