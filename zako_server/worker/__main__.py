"""`python -m zako_server.worker`: how the pool starts a worker process (see process.py)."""

import sys

from zako_server.worker.process import main

sys.exit(main())
