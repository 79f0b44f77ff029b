"""OTLP ingest with the real OpenTelemetry Python SDK and exporters: OpenLLMetry
(`opentelemetry-instrumentation-openai`) instruments the official OpenAI client, which calls the
mock provider on 127.0.0.1 (the only mocked part); spans (and, in events mode, logs) go to Loupe
over OTLP/HTTP protobuf; the recorded requests are read back through /v1/hql."""
import json

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import openai

from test_gateway_sdks import provider  # noqa: F401  (pytest fixture: the mock upstream)

HEADERS = {"Authorization": "Bearer unused-without-keys"}


class AssociationProperties(SpanProcessor):
    """What the Traceloop SDK does with `Traceloop.set_association_properties(...)`: every span
    started in the context carries `traceloop.association.properties.<key>`."""

    def __init__(self, props):
        self.props = props

    def on_start(self, span, parent_context=None):
        for k, v in self.props.items():
            span.set_attribute(f"traceloop.association.properties.{k}", v)


def providers(loupe, props):
    resource = Resource.create({"service.name": "otlp-e2e"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(AssociationProperties(props))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=loupe.base + "/v1/traces", headers=HEADERS)))
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=loupe.base + "/v1/logs",
                                                                        headers=HEADERS)))
    return tp, lp


def chat(provider, stream=False):
    client = openai.OpenAI(base_url=provider.url + "/v1", api_key="sk-test", max_retries=0)
    msgs = [{"role": "user", "content": "Name the largest planet in the solar system."}]
    if stream:
        out = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                             stream_options={"include_usage": True})
        return "".join((c.choices[0].delta.content or "") for c in out if c.choices)
    return client.chat.completions.create(model="gpt-4o-mini", messages=msgs).choices[0].message.content


def test_openllmetry_spans_become_requests_with_tokens_cost_user_and_properties(loupe_factory, provider):
    loupe = loupe_factory()
    tp, lp = providers(loupe, {"Helicone-User-Id": "u_42", "Helicone-Session-Id": "sess-1",
                               "Helicone-Property-Env": "prod", "chat_id": "c9"})
    inst = OpenAIInstrumentor()
    inst.instrument(tracer_provider=tp, logger_provider=lp)
    try:
        # A workflow span around both calls, as Traceloop's @workflow does.
        with tp.get_tracer("e2e").start_as_current_span("answer.workflow") as wf:
            wf.set_attribute("traceloop.span.kind", "workflow")
            answer = chat(provider)
            streamed = chat(provider, stream=True)
    finally:
        inst.uninstrument()
    assert answer and streamed
    assert tp.force_flush(30_000)
    tp.shutdown()
    lp.shutdown()

    rows = loupe.hql("requests | project model, response_model, provider, prompt_tokens, completion_tokens, "
                      "total_tokens, cost_usd, price_known, user_id, session_id, properties, stream, ttft_ms, "
                      "trace_id, request_body, response_body | order by stream asc")
    assert len(rows) == 2, rows
    want = json.loads(open(_fixture_path("openai_chat_response.json")).read())["usage"]
    plain, streamed_row = rows
    assert plain["model"] == "gpt-4o-mini"
    assert plain["provider"] == "openai"
    assert plain["prompt_tokens"] == want["prompt_tokens"]
    assert plain["completion_tokens"] == want["completion_tokens"]
    assert plain["price_known"] is True and float(plain["cost_usd"]) > 0
    assert plain["user_id"] == "u_42" and plain["session_id"] == "sess-1"
    props = plain["properties"] if isinstance(plain["properties"], dict) else json.loads(plain["properties"])
    assert props.get("env") == "prod" and props.get("chat_id") == "c9", props
    assert props.get("service.name") == "otlp-e2e"
    assert len(plain["trace_id"]) == 32
    req = json.loads(plain["request_body"])
    assert req["messages"][0]["parts"][0]["content"].startswith("Name the largest planet")
    assert answer in plain["response_body"]
    assert streamed_row["stream"] is True
    assert streamed_row["prompt_tokens"] > 0

    # Every span is in `spans`: the workflow and, under it, the two LLM calls linked to their
    # request records.
    spans = loupe.hql("spans | order by created_at asc | project name, span_id, parent_span_id, is_llm, "
                       "request_id, trace_id, session_id, service_name")
    assert len(spans) == 3, spans
    root = next(s for s in spans if s["name"] == "answer.workflow")
    assert root["is_llm"] is False and root["parent_span_id"] is None
    assert root["session_id"] == "sess-1" and root["service_name"] == "otlp-e2e"
    llm = [s for s in spans if s["is_llm"]]
    assert len(llm) == 2
    assert all(s["parent_span_id"] == root["span_id"] and s["trace_id"] == root["trace_id"] for s in llm)
    ids = loupe.hql("requests | project request_id")
    assert sorted(s["request_id"] for s in llm) == sorted(r["request_id"] for r in ids)


def test_openllmetry_event_logs_are_joined_into_the_record(loupe_factory, provider):
    loupe = loupe_factory()
    tp, lp = providers(loupe, {})
    inst = OpenAIInstrumentor(use_attributes=False)
    inst.instrument(tracer_provider=tp, logger_provider=lp)
    try:
        answer = chat(provider)
    finally:
        inst.uninstrument()
    # Event logs first (the SDK's default schedule: logs every 1 s, spans every 5 s).
    assert lp.force_flush(30_000)
    assert tp.force_flush(30_000)
    tp.shutdown()
    lp.shutdown()
    rows = loupe.hql("requests | project request_body, response_body, prompt_tokens")
    assert len(rows) == 1, rows
    req = json.loads(rows[0]["request_body"])
    assert req["messages"][0]["role"] == "user", req
    resp = json.loads(rows[0]["response_body"])
    assert resp["messages"][0]["parts"][0]["content"] == answer, resp


def _fixture_path(name):
    import os
    return os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "providers", name)


def test_otlp_grpc_exporter(loupe_factory, provider):
    """The same OpenLLMetry spans through the OTLP/gRPC exporter (gzip on)."""
    import re

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
    from grpc import Compression

    loupe = loupe_factory(env={"LOUPE__OTLP__GRPC_LISTEN": "127.0.0.1:0"})
    # The gRPC address is announced on stderr before the HTTP one.
    addr = None
    for line in loupe.lines_seen:
        m = re.search(r"loupe OTLP/gRPC listening on (127\.0\.0\.1:\d+)", line)
        if m:
            addr = m.group(1)
    assert addr, "no gRPC address announced"
    exporter = GrpcSpanExporter(endpoint=addr, insecure=True, compression=Compression.Gzip,
                                headers=(("authorization", "Bearer unused-without-keys"),))
    tp = TracerProvider(resource=Resource.create({"service.name": "otlp-grpc-e2e"}))
    tp.add_span_processor(BatchSpanProcessor(exporter))
    inst = OpenAIInstrumentor()
    inst.instrument(tracer_provider=tp)
    try:
        answer = chat(provider)
    finally:
        inst.uninstrument()
    assert answer
    assert tp.force_flush(30_000)
    tp.shutdown()
    # force_flush returned after Loupe answered, and Loupe answers once the records are durable.
    rows = loupe.hql("requests | project model, prompt_tokens, cost_usd, properties")
    assert len(rows) == 1, rows
    assert rows[0]["model"] == "gpt-4o-mini" and rows[0]["prompt_tokens"] > 0
    assert float(rows[0]["cost_usd"]) > 0
