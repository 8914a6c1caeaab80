import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import error_details_pb2 as _error_details_pb2
from zako_sdk.proto.zako.v1 import cas_pb2 as _cas_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContextKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTEXT_KIND_UNSPECIFIED: _ClassVar[ContextKind]
    CONTEXT_KIND_PACKAGE: _ClassVar[ContextKind]
    CONTEXT_KIND_BUILD: _ClassVar[ContextKind]
    CONTEXT_KIND_RULE: _ClassVar[ContextKind]
    CONTEXT_KIND_TOOLCHAIN: _ClassVar[ContextKind]
    CONTEXT_KIND_CONFIG: _ClassVar[ContextKind]

class CachePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_POLICY_UNSPECIFIED: _ClassVar[CachePolicy]
    CACHE_POLICY_USE: _ClassVar[CachePolicy]
    CACHE_POLICY_REFRESH: _ClassVar[CachePolicy]
    CACHE_POLICY_SKIP: _ClassVar[CachePolicy]

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSPECIFIED: _ClassVar[LogLevel]
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_WARN: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]

class FailureReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_REASON_UNSPECIFIED: _ClassVar[FailureReason]
    FAILURE_REASON_JS_ERROR: _ClassVar[FailureReason]
    FAILURE_REASON_SYNTAX_ERROR: _ClassVar[FailureReason]
    FAILURE_REASON_TIMEOUT: _ClassVar[FailureReason]
    FAILURE_REASON_OUT_OF_MEMORY: _ClassVar[FailureReason]
    FAILURE_REASON_DEADLOCK: _ClassVar[FailureReason]
    FAILURE_REASON_NOT_SERIALIZABLE: _ClassVar[FailureReason]
    FAILURE_REASON_RESULT_TOO_LARGE: _ClassVar[FailureReason]
    FAILURE_REASON_WORKER_LOST: _ClassVar[FailureReason]
    FAILURE_REASON_MODULE_NOT_FOUND: _ClassVar[FailureReason]
    FAILURE_REASON_CAPABILITY_DENIED: _ClassVar[FailureReason]
    FAILURE_REASON_INTERNAL: _ClassVar[FailureReason]
    FAILURE_REASON_DEADLINE_EXCEEDED: _ClassVar[FailureReason]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_QUEUED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
CONTEXT_KIND_UNSPECIFIED: ContextKind
CONTEXT_KIND_PACKAGE: ContextKind
CONTEXT_KIND_BUILD: ContextKind
CONTEXT_KIND_RULE: ContextKind
CONTEXT_KIND_TOOLCHAIN: ContextKind
CONTEXT_KIND_CONFIG: ContextKind
CACHE_POLICY_UNSPECIFIED: CachePolicy
CACHE_POLICY_USE: CachePolicy
CACHE_POLICY_REFRESH: CachePolicy
CACHE_POLICY_SKIP: CachePolicy
LOG_LEVEL_UNSPECIFIED: LogLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_WARN: LogLevel
LOG_LEVEL_ERROR: LogLevel
FAILURE_REASON_UNSPECIFIED: FailureReason
FAILURE_REASON_JS_ERROR: FailureReason
FAILURE_REASON_SYNTAX_ERROR: FailureReason
FAILURE_REASON_TIMEOUT: FailureReason
FAILURE_REASON_OUT_OF_MEMORY: FailureReason
FAILURE_REASON_DEADLOCK: FailureReason
FAILURE_REASON_NOT_SERIALIZABLE: FailureReason
FAILURE_REASON_RESULT_TOO_LARGE: FailureReason
FAILURE_REASON_WORKER_LOST: FailureReason
FAILURE_REASON_MODULE_NOT_FOUND: FailureReason
FAILURE_REASON_CAPABILITY_DENIED: FailureReason
FAILURE_REASON_INTERNAL: FailureReason
FAILURE_REASON_DEADLINE_EXCEEDED: FailureReason
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_QUEUED: TaskState
TASK_STATE_RUNNING: TaskState

class Module(_message.Message):
    __slots__ = ("name", "source", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    digest: _cas_pb2.Digest
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., digest: _Optional[_Union[_cas_pb2.Digest, _Mapping]] = ...) -> None: ...

class ResourceRequests(_message.Message):
    __slots__ = ("cpu_millis", "memory_bytes", "extras")
    class ExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_bytes: int
    extras: _containers.ScalarMap[str, float]
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., extras: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "source", "entry_name", "modules", "input_json", "context", "resources", "priority", "timeout", "labels", "system_access", "queue_timeout", "fresh_isolate", "epoch", "seed", "tree", "cache", "terminal_only")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ACCESS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    FRESH_ISOLATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    entry_name: str
    modules: _containers.RepeatedCompositeFieldContainer[Module]
    input_json: str
    context: ContextKind
    resources: ResourceRequests
    priority: int
    timeout: _duration_pb2.Duration
    labels: _containers.ScalarMap[str, str]
    system_access: bool
    queue_timeout: _duration_pb2.Duration
    fresh_isolate: bool
    epoch: _timestamp_pb2.Timestamp
    seed: str
    tree: _cas_pb2.Digest
    cache: CachePolicy
    terminal_only: bool
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., entry_name: _Optional[str] = ..., modules: _Optional[_Iterable[_Union[Module, _Mapping]]] = ..., input_json: _Optional[str] = ..., context: _Optional[_Union[ContextKind, str]] = ..., resources: _Optional[_Union[ResourceRequests, _Mapping]] = ..., priority: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., system_access: _Optional[bool] = ..., queue_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fresh_isolate: _Optional[bool] = ..., epoch: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seed: _Optional[str] = ..., tree: _Optional[_Union[_cas_pb2.Digest, _Mapping]] = ..., cache: _Optional[_Union[CachePolicy, str]] = ..., terminal_only: _Optional[bool] = ...) -> None: ...

class CancelTask(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("task", "cancel", "tasks", "options")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    task: Task
    cancel: CancelTask
    tasks: TaskBatch
    options: StreamOptions
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., cancel: _Optional[_Union[CancelTask, _Mapping]] = ..., tasks: _Optional[_Union[TaskBatch, _Mapping]] = ..., options: _Optional[_Union[StreamOptions, _Mapping]] = ...) -> None: ...

class TaskBatch(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class StreamOptions(_message.Message):
    __slots__ = ("batch_events",)
    BATCH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    batch_events: bool
    def __init__(self, batch_events: _Optional[bool] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[SubmitResponse]
    def __init__(self, events: _Optional[_Iterable[_Union[SubmitResponse, _Mapping]]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("task_id", "time", "accepted", "started", "log", "completed", "failed", "cancelled", "rejected", "batch")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    time: _timestamp_pb2.Timestamp
    accepted: Accepted
    started: Started
    log: LogLine
    completed: Completed
    failed: Failed
    cancelled: Cancelled
    rejected: Rejected
    batch: EventBatch
    def __init__(self, task_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., log: _Optional[_Union[LogLine, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., failed: _Optional[_Union[Failed, _Mapping]] = ..., cancelled: _Optional[_Union[Cancelled, _Mapping]] = ..., rejected: _Optional[_Union[Rejected, _Mapping]] = ..., batch: _Optional[_Union[EventBatch, _Mapping]] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("queue_position",)
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    queue_position: int
    def __init__(self, queue_position: _Optional[int] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("worker_id", "worker_pid")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    worker_pid: int
    def __init__(self, worker_id: _Optional[str] = ..., worker_pid: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("level", "message", "time", "more")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    level: LogLevel
    message: str
    time: _timestamp_pb2.Timestamp
    more: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, level: _Optional[_Union[LogLevel, str]] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., more: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("accepted_at", "started_at", "finished_at", "queued", "run", "cpu", "warm_isolate")
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    WARM_ISOLATE_FIELD_NUMBER: _ClassVar[int]
    accepted_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    queued: _duration_pb2.Duration
    run: _duration_pb2.Duration
    cpu: _duration_pb2.Duration
    warm_isolate: bool
    def __init__(self, accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queued: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., run: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cpu: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., warm_isolate: _Optional[bool] = ...) -> None: ...

class HeapUsage(_message.Message):
    __slots__ = ("used_bytes", "total_bytes", "limit_bytes")
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    used_bytes: int
    total_bytes: int
    limit_bytes: int
    def __init__(self, used_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., limit_bytes: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("value_json", "timings", "heap", "cached", "worker_id")
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    HEAP_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    value_json: str
    timings: Timings
    heap: HeapUsage
    cached: bool
    worker_id: str
    def __init__(self, value_json: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., heap: _Optional[_Union[HeapUsage, _Mapping]] = ..., cached: _Optional[bool] = ..., worker_id: _Optional[str] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: Result
    def __init__(self, result: _Optional[_Union[Result, _Mapping]] = ...) -> None: ...

class JsError(_message.Message):
    __slots__ = ("name", "message", "stack", "module", "line", "column")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    name: str
    message: str
    stack: str
    module: str
    line: int
    column: int
    def __init__(self, name: _Optional[str] = ..., message: _Optional[str] = ..., stack: _Optional[str] = ..., module: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class Failed(_message.Message):
    __slots__ = ("reason", "error", "timings", "heap", "cached")
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    HEAP_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    reason: FailureReason
    error: JsError
    timings: Timings
    heap: HeapUsage
    cached: bool
    def __init__(self, reason: _Optional[_Union[FailureReason, str]] = ..., error: _Optional[_Union[JsError, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., heap: _Optional[_Union[HeapUsage, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class Cancelled(_message.Message):
    __slots__ = ("reason", "was_running", "timings")
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    was_running: bool
    timings: Timings
    def __init__(self, reason: _Optional[str] = ..., was_running: _Optional[bool] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class Rejected(_message.Message):
    __slots__ = ("code", "message", "field", "retry_after", "quota", "missing_blobs")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    MISSING_BLOBS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field: str
    retry_after: _duration_pb2.Duration
    quota: str
    missing_blobs: _containers.RepeatedCompositeFieldContainer[_cas_pb2.Digest]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., quota: _Optional[str] = ..., missing_blobs: _Optional[_Iterable[_Union[_cas_pb2.Digest, _Mapping]]] = ...) -> None: ...

class RpcErrorDetails(_message.Message):
    __slots__ = ("retry_info", "quota_failure", "bad_request", "precondition_failure")
    RETRY_INFO_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FAILURE_FIELD_NUMBER: _ClassVar[int]
    BAD_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_FAILURE_FIELD_NUMBER: _ClassVar[int]
    retry_info: _error_details_pb2.RetryInfo
    quota_failure: _error_details_pb2.QuotaFailure
    bad_request: _error_details_pb2.BadRequest
    precondition_failure: _error_details_pb2.PreconditionFailure
    def __init__(self, retry_info: _Optional[_Union[_error_details_pb2.RetryInfo, _Mapping]] = ..., quota_failure: _Optional[_Union[_error_details_pb2.QuotaFailure, _Mapping]] = ..., bad_request: _Optional[_Union[_error_details_pb2.BadRequest, _Mapping]] = ..., precondition_failure: _Optional[_Union[_error_details_pb2.PreconditionFailure, _Mapping]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("task_id", "logs", "completed", "failed", "cancelled", "logs_dropped")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    LOGS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    logs: _containers.RepeatedCompositeFieldContainer[LogLine]
    completed: Completed
    failed: Failed
    cancelled: Cancelled
    logs_dropped: int
    def __init__(self, task_id: _Optional[str] = ..., logs: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., failed: _Optional[_Union[Failed, _Mapping]] = ..., cancelled: _Optional[_Union[Cancelled, _Mapping]] = ..., logs_dropped: _Optional[int] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("previous_state",)
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    previous_state: TaskState
    def __init__(self, previous_state: _Optional[_Union[TaskState, str]] = ...) -> None: ...

class BroadcastGCRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerGC(_message.Message):
    __slots__ = ("worker_id", "before", "after", "rss_before_bytes", "rss_after_bytes")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    RSS_BEFORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RSS_AFTER_BYTES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    before: HeapUsage
    after: HeapUsage
    rss_before_bytes: int
    rss_after_bytes: int
    def __init__(self, worker_id: _Optional[str] = ..., before: _Optional[_Union[HeapUsage, _Mapping]] = ..., after: _Optional[_Union[HeapUsage, _Mapping]] = ..., rss_before_bytes: _Optional[int] = ..., rss_after_bytes: _Optional[int] = ...) -> None: ...

class BroadcastGCResponse(_message.Message):
    __slots__ = ("workers", "total_freed_bytes")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerGC]
    total_freed_bytes: int
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerGC, _Mapping]]] = ..., total_freed_bytes: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PoolStats(_message.Message):
    __slots__ = ("min_workers", "max_workers", "live", "busy", "idle", "started_total", "crashed_total", "reclaimed_total", "workers")
    MIN_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKERS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    STARTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CRASHED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    min_workers: int
    max_workers: int
    live: int
    busy: int
    idle: int
    started_total: int
    crashed_total: int
    reclaimed_total: int
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    def __init__(self, min_workers: _Optional[int] = ..., max_workers: _Optional[int] = ..., live: _Optional[int] = ..., busy: _Optional[int] = ..., idle: _Optional[int] = ..., started_total: _Optional[int] = ..., crashed_total: _Optional[int] = ..., reclaimed_total: _Optional[int] = ..., workers: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ...) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("worker_id", "pid", "state", "tasks_run", "rss_bytes", "last_heap")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASKS_RUN_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_HEAP_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    pid: int
    state: str
    tasks_run: int
    rss_bytes: int
    last_heap: HeapUsage
    def __init__(self, worker_id: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[str] = ..., tasks_run: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., last_heap: _Optional[_Union[HeapUsage, _Mapping]] = ...) -> None: ...

class SystemStats(_message.Message):
    __slots__ = ("effective_cpus", "effective_memory_bytes", "cpu_percent", "memory_available_bytes", "server_rss_bytes", "load_average_1m")
    EFFECTIVE_CPUS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SERVER_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_1M_FIELD_NUMBER: _ClassVar[int]
    effective_cpus: float
    effective_memory_bytes: int
    cpu_percent: float
    memory_available_bytes: int
    server_rss_bytes: int
    load_average_1m: float
    def __init__(self, effective_cpus: _Optional[float] = ..., effective_memory_bytes: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., memory_available_bytes: _Optional[int] = ..., server_rss_bytes: _Optional[int] = ..., load_average_1m: _Optional[float] = ...) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("depth", "capacity", "running", "depth_by_priority", "queued_bytes", "capacity_bytes")
    class DepthByPriorityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DEPTH_BY_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    depth: int
    capacity: int
    running: int
    depth_by_priority: _containers.ScalarMap[int, int]
    queued_bytes: int
    capacity_bytes: int
    def __init__(self, depth: _Optional[int] = ..., capacity: _Optional[int] = ..., running: _Optional[int] = ..., depth_by_priority: _Optional[_Mapping[int, int]] = ..., queued_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ...) -> None: ...

class ResourceStats(_message.Message):
    __slots__ = ("name", "capacity", "in_use", "queued_demand")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_DEMAND_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity: float
    in_use: float
    queued_demand: float
    def __init__(self, name: _Optional[str] = ..., capacity: _Optional[float] = ..., in_use: _Optional[float] = ..., queued_demand: _Optional[float] = ...) -> None: ...

class TenantStats(_message.Message):
    __slots__ = ("tenant", "running", "queued", "rejected", "accepted")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    running: int
    queued: int
    rejected: int
    accepted: int
    def __init__(self, tenant: _Optional[str] = ..., running: _Optional[int] = ..., queued: _Optional[int] = ..., rejected: _Optional[int] = ..., accepted: _Optional[int] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("bounds_seconds", "counts", "count", "sum_seconds", "p50_seconds", "p90_seconds", "p99_seconds")
    BOUNDS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P90_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P99_SECONDS_FIELD_NUMBER: _ClassVar[int]
    bounds_seconds: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    count: int
    sum_seconds: float
    p50_seconds: float
    p90_seconds: float
    p99_seconds: float
    def __init__(self, bounds_seconds: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., count: _Optional[int] = ..., sum_seconds: _Optional[float] = ..., p50_seconds: _Optional[float] = ..., p90_seconds: _Optional[float] = ..., p99_seconds: _Optional[float] = ...) -> None: ...

class TaskCounters(_message.Message):
    __slots__ = ("accepted", "completed", "failed", "cancelled", "rejected", "failed_by_reason", "rejected_by_reason")
    class FailedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RejectedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    FAILED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    REJECTED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    completed: int
    failed: int
    cancelled: int
    rejected: int
    failed_by_reason: _containers.ScalarMap[str, int]
    rejected_by_reason: _containers.ScalarMap[str, int]
    def __init__(self, accepted: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., rejected: _Optional[int] = ..., failed_by_reason: _Optional[_Mapping[str, int]] = ..., rejected_by_reason: _Optional[_Mapping[str, int]] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("server", "v8", "mini_racer", "python", "protocol")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    V8_FIELD_NUMBER: _ClassVar[int]
    MINI_RACER_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    server: str
    v8: str
    mini_racer: str
    python: str
    protocol: str
    def __init__(self, server: _Optional[str] = ..., v8: _Optional[str] = ..., mini_racer: _Optional[str] = ..., python: _Optional[str] = ..., protocol: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("time", "uptime", "pool", "queue", "tasks", "versions", "resources", "tenants", "queue_wait", "run_time", "system", "transforms", "cas", "action_cache", "code_cache")
    TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_FIELD_NUMBER: _ClassVar[int]
    RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    ACTION_CACHE_FIELD_NUMBER: _ClassVar[int]
    CODE_CACHE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    pool: PoolStats
    queue: QueueStats
    tasks: TaskCounters
    versions: VersionInfo
    resources: _containers.RepeatedCompositeFieldContainer[ResourceStats]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantStats]
    queue_wait: Histogram
    run_time: Histogram
    system: SystemStats
    transforms: TransformStats
    cas: _cas_pb2.CasStats
    action_cache: _cas_pb2.ActionCacheStats
    code_cache: _cas_pb2.CodeCacheStats
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., pool: _Optional[_Union[PoolStats, _Mapping]] = ..., queue: _Optional[_Union[QueueStats, _Mapping]] = ..., tasks: _Optional[_Union[TaskCounters, _Mapping]] = ..., versions: _Optional[_Union[VersionInfo, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceStats, _Mapping]]] = ..., tenants: _Optional[_Iterable[_Union[TenantStats, _Mapping]]] = ..., queue_wait: _Optional[_Union[Histogram, _Mapping]] = ..., run_time: _Optional[_Union[Histogram, _Mapping]] = ..., system: _Optional[_Union[SystemStats, _Mapping]] = ..., transforms: _Optional[_Union[TransformStats, _Mapping]] = ..., cas: _Optional[_Union[_cas_pb2.CasStats, _Mapping]] = ..., action_cache: _Optional[_Union[_cas_pb2.ActionCacheStats, _Mapping]] = ..., code_cache: _Optional[_Union[_cas_pb2.CodeCacheStats, _Mapping]] = ...) -> None: ...

class TransformStats(_message.Message):
    __slots__ = ("processes", "queued", "busy", "cache_hits", "cache_misses", "cache_entries", "cache_bytes", "files_transformed", "transform_time")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_TRANSFORMED_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_TIME_FIELD_NUMBER: _ClassVar[int]
    processes: int
    queued: int
    busy: int
    cache_hits: int
    cache_misses: int
    cache_entries: int
    cache_bytes: int
    files_transformed: int
    transform_time: _duration_pb2.Duration
    def __init__(self, processes: _Optional[int] = ..., queued: _Optional[int] = ..., busy: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., cache_entries: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., files_transformed: _Optional[int] = ..., transform_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_source_bytes", "max_modules", "max_input_bytes", "max_result_bytes", "max_log_bytes", "min_timeout", "default_timeout", "max_timeout", "default_memory_bytes", "max_memory_bytes", "max_tasks_per_stream", "max_log_lines", "stream_outbox_bytes", "max_error_text_bytes", "max_tree_bytes", "max_blob_bytes", "cas_capacity_bytes")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MODULES_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_PER_STREAM_FIELD_NUMBER: _ClassVar[int]
    MAX_LOG_LINES_FIELD_NUMBER: _ClassVar[int]
    STREAM_OUTBOX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAS_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_source_bytes: int
    max_modules: int
    max_input_bytes: int
    max_result_bytes: int
    max_log_bytes: int
    min_timeout: _duration_pb2.Duration
    default_timeout: _duration_pb2.Duration
    max_timeout: _duration_pb2.Duration
    default_memory_bytes: int
    max_memory_bytes: int
    max_tasks_per_stream: int
    max_log_lines: int
    stream_outbox_bytes: int
    max_error_text_bytes: int
    max_tree_bytes: int
    max_blob_bytes: int
    cas_capacity_bytes: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_source_bytes: _Optional[int] = ..., max_modules: _Optional[int] = ..., max_input_bytes: _Optional[int] = ..., max_result_bytes: _Optional[int] = ..., max_log_bytes: _Optional[int] = ..., min_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_memory_bytes: _Optional[int] = ..., max_memory_bytes: _Optional[int] = ..., max_tasks_per_stream: _Optional[int] = ..., max_log_lines: _Optional[int] = ..., stream_outbox_bytes: _Optional[int] = ..., max_error_text_bytes: _Optional[int] = ..., max_tree_bytes: _Optional[int] = ..., max_blob_bytes: _Optional[int] = ..., cas_capacity_bytes: _Optional[int] = ...) -> None: ...

class PriorityRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class CapabilitiesResponse(_message.Message):
    __slots__ = ("limits", "context_kinds", "priority", "builtin_modules", "system_access_allowed", "versions", "resource_capacity", "isolate_reuse", "action_cache", "submit_batching")
    class ResourceCapacityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_KINDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_MODULES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ACCESS_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ISOLATE_REUSE_FIELD_NUMBER: _ClassVar[int]
    ACTION_CACHE_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_BATCHING_FIELD_NUMBER: _ClassVar[int]
    limits: Limits
    context_kinds: _containers.RepeatedScalarFieldContainer[ContextKind]
    priority: PriorityRange
    builtin_modules: _containers.RepeatedScalarFieldContainer[str]
    system_access_allowed: bool
    versions: VersionInfo
    resource_capacity: _containers.ScalarMap[str, float]
    isolate_reuse: bool
    action_cache: bool
    submit_batching: bool
    def __init__(self, limits: _Optional[_Union[Limits, _Mapping]] = ..., context_kinds: _Optional[_Iterable[_Union[ContextKind, str]]] = ..., priority: _Optional[_Union[PriorityRange, _Mapping]] = ..., builtin_modules: _Optional[_Iterable[str]] = ..., system_access_allowed: _Optional[bool] = ..., versions: _Optional[_Union[VersionInfo, _Mapping]] = ..., resource_capacity: _Optional[_Mapping[str, float]] = ..., isolate_reuse: _Optional[bool] = ..., action_cache: _Optional[bool] = ..., submit_batching: _Optional[bool] = ...) -> None: ...
