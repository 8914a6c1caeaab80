"""Building blocks of the contract's events: times, heap figures, log levels, failure
reasons, and the bounds that keep every event within one gRPC message (#12).

Pure functions of their arguments: the engine builds a task's events with them and the
service its replies; neither needs gRPC for it.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import FailureReason, HeapFigures

# The contract's level of each console level the worker reports.
LEVELS = {
    "debug": pb.LOG_LEVEL_DEBUG,
    "info": pb.LOG_LEVEL_INFO,
    "warn": pb.LOG_LEVEL_WARN,
    "error": pb.LOG_LEVEL_ERROR,
}
# The contract's number for each way a task can fail (CANCELLED is not a failure: the
# task ends with a Cancelled event instead).
FAILURE_REASONS: dict[FailureReason, pb.FailureReason] = {
    FailureReason.JS_ERROR: pb.FAILURE_REASON_JS_ERROR,
    FailureReason.SYNTAX_ERROR: pb.FAILURE_REASON_SYNTAX_ERROR,
    FailureReason.TIMEOUT: pb.FAILURE_REASON_TIMEOUT,
    FailureReason.OUT_OF_MEMORY: pb.FAILURE_REASON_OUT_OF_MEMORY,
    FailureReason.DEADLOCK: pb.FAILURE_REASON_DEADLOCK,
    FailureReason.NOT_SERIALIZABLE: pb.FAILURE_REASON_NOT_SERIALIZABLE,
    FailureReason.RESULT_TOO_LARGE: pb.FAILURE_REASON_RESULT_TOO_LARGE,
    FailureReason.WORKER_LOST: pb.FAILURE_REASON_WORKER_LOST,
    FailureReason.MODULE_NOT_FOUND: pb.FAILURE_REASON_MODULE_NOT_FOUND,
    FailureReason.CAPABILITY_DENIED: pb.FAILURE_REASON_CAPABILITY_DENIED,
    FailureReason.INTERNAL: pb.FAILURE_REASON_INTERNAL,
}

# Every event must fit one gRPC message, whatever a task throws: an error's message and
# stack keep at most this many UTF-8 bytes each (name and module a fraction of it), the
# rest replaced by the marker. 64 KiB reads as a whole stack, and four of them (name,
# message, stack, module) stay far below any sensible message limit.
ERROR_TEXT_BYTES = 64 << 10
TRUNCATED = " …[truncated {bytes} bytes]"
# Room for an event's own fields around its payload (ids, timings, heap figures).
EVENT_OVERHEAD_BYTES = 64 << 10


def truncate(text: str, limit: int = ERROR_TEXT_BYTES) -> str:
    """`text` cut to `limit` UTF-8 bytes (never inside a character), marked when cut."""
    if len(text) <= limit // 4:  # four bytes per character at most: surely short enough
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    dropped = len(data) - len(kept.encode("utf-8", "surrogatepass"))
    return kept + TRUNCATED.format(bytes=dropped)


# Built with keyword arguments (C) rather than FromNanoseconds (Python, with range checks):
# a task makes six of these, and they showed in the server's profile.
def timestamp(wall: float) -> Timestamp:
    seconds, nanos = divmod(int(wall * 1e9), 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos)


def duration(seconds: float) -> Duration:
    whole, nanos = divmod(int(max(seconds, 0.0) * 1e9), 1_000_000_000)
    return Duration(seconds=whole, nanos=nanos)


def heap_usage(heap: HeapFigures | None) -> pb.HeapUsage:
    """A worker's heap figures (None: it had none to report)."""
    if heap is None:
        return pb.HeapUsage()
    return pb.HeapUsage(used_bytes=heap.used, total_bytes=heap.total, limit_bytes=heap.limit)
