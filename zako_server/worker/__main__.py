"""`python -m zako_server.worker`: how the pool starts a worker process (see process.py).

The time zone and locale are pinned before V8 starts: V8 and its ICU read TZ and
LC_ALL/LANG from the environment once, and a hermetic task's `new Date().toString()`,
`toLocaleString()` and `Intl` output must not depend on the host the worker runs on
(docs/runtime.md). Every context runs in UTC with the en-US locale.

`--cpu N` pins the process to CPU N, also before V8 starts: its threads (the event loop
and each isolate's, which hand every eval to each other) inherit the mask of the thread
that creates them (server/worker_set.py says why the pool pins workers).
"""

import os
import sys

os.environ["TZ"] = "UTC"
os.environ["LC_ALL"] = "en_US.UTF-8"
os.environ["LANG"] = "en_US.UTF-8"
os.environ.pop("LANGUAGE", None)

if len(sys.argv) == 3 and sys.argv[1] == "--cpu" and hasattr(os, "sched_setaffinity"):
    try:
        os.sched_setaffinity(0, {int(sys.argv[2])})
    except (OSError, ValueError) as exc:  # not a CPU this process may use: run unpinned
        print(f"zako worker: could not pin to CPU {sys.argv[2]}: {exc}", file=sys.stderr)

from zako_server.worker.process import main

sys.exit(main())
