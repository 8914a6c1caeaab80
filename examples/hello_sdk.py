"""Run examples/hello.js on a Zako server from Python: `python examples/hello_sdk.py`.

The server address comes from ZAKO_TARGET (default 127.0.0.1:50051); start one with
`make serve`. Prints the value the script returned, as JSON.
"""

import json
import os
from pathlib import Path

from zako_sdk import Client

source = (Path(__file__).parent / "hello.js").read_text()
with Client(os.environ.get("ZAKO_TARGET", "127.0.0.1:50051")) as client:
    result = client.run(source, input={"name": "python"})
    print(json.dumps(result.value))
