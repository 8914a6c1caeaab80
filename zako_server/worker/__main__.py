"""`python -m zako_server.worker`: how the pool starts a worker process (see process.py).

The time zone and locale are pinned before V8 starts: V8 and its ICU read TZ and
LC_ALL/LANG from the environment once, and a hermetic task's `new Date().toString()`,
`toLocaleString()` and `Intl` output must not depend on the host the worker runs on
(docs/runtime.md). Every context runs in UTC with the en-US locale.
"""

import os
import sys

os.environ["TZ"] = "UTC"
os.environ["LC_ALL"] = "en_US.UTF-8"
os.environ["LANG"] = "en_US.UTF-8"
os.environ.pop("LANGUAGE", None)

from zako_server.worker.process import main

sys.exit(main())
