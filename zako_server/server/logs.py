"""Server logging: plain text for people, or one JSON object per line for collectors.

Records about a task carry `task_id` and `tenant` (passed as `extra=`), and the JSON
format puts them in their own fields, so a log pipeline can follow one task or one
tenant without parsing messages.
"""

from __future__ import annotations

import json
import logging
import sys
import time

TASK_FIELDS = ("task_id", "tenant", "worker_id", "reason")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the task fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in TASK_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual text line, with `task=… tenant=…` appended when the record has them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in TASK_FIELDS
            if getattr(record, name, None) is not None
        ]
        return f"{line} [{' '.join(fields)}]" if fields else line


def configure(level: str, fmt: str) -> None:
    """Install the chosen format on the root logger (once, at start-up)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
