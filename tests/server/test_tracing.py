"""OpenTelemetry spans, captured with an in-memory exporter."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def test_rpc_admission_and_execution_spans_join_the_callers_trace(server_factory):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = server_factory(tracer_provider=provider)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        task = pb.Task(id="traced", source="module.exports = 1")
        reply = await stub.Run(
            pb.RunRequest(task=task), metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),)
        )
    assert reply.completed.result.value_json == "1"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    rpc = spans["/zako.v1.Executor/Run"]
    wait, execute = spans["zako.admission.wait"], spans["zako.execute"]
    assert format(rpc.context.trace_id, "032x") == TRACE_ID
    assert format(rpc.parent.span_id, "016x") == PARENT
    for child in (wait, execute):
        assert child.context.trace_id == rpc.context.trace_id
        assert child.parent.span_id == rpc.context.span_id
        assert child.attributes["zako.task_id"] == "traced"
        assert child.attributes["zako.tenant"] == "anonymous"
    assert execute.attributes["zako.outcome"] == "completed"
    assert wait.end_time <= execute.start_time
