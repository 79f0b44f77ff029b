"""Caching, retries, fallbacks and rate limits with the official OpenAI SDK (retries of the SDK
itself off, so every retry seen is Loupe's). A mock provider on 127.0.0.1 (the only mocked part)
serves the recorded fixtures and fails on cue; the recorded rows are read back through /v1/hql."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import provider_fixture as fixture


class FlakyProvider:
    """`gpt-flaky` fails its first two calls with 503; `gpt-down` always answers 500; every other
    model answers with the fixtures (JSON or SSE); /v1/messages answers as Anthropic."""

    def __init__(self):
        self.requests = []
        self.flaky_left = 2
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                provider.requests.append({"path": self.path, "body": body})
                model = body.get("model")
                if model == "gpt-flaky" and provider.flaky_left > 0:
                    provider.flaky_left -= 1
                    return self.send(503, b'{"error":{"message":"overloaded","type":"server_error"}}')
                if model == "gpt-down":
                    return self.send(500, b'{"error":{"message":"down","type":"server_error"}}')
                if self.path == "/v1/messages":
                    return self.send(200, fixture("anthropic_messages_response.json"))
                if body.get("stream"):
                    sse = fixture("openai_chat_stream.sse").decode()
                    if not (body.get("stream_options") or {}).get("include_usage"):
                        sse = "\n\n".join(e for e in sse.split("\n\n") if '"choices":[]' not in e)
                    return self.send(200, sse.encode(), "text/event-stream")
                return self.send(200, fixture("openai_chat_response.json"))

            def send(self, status, payload, ctype="application/json"):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    p = FlakyProvider()
    yield p
    p.stop()


def test_cache_retries_fallbacks_and_rate_limits_with_the_openai_sdk(loupe_factory, provider):
    loupe = loupe_factory(env={
        "LOUPE__PROVIDERS__OPENAI__BASE_URL": provider.url + "/v1",
        "LOUPE__PROVIDERS__OPENAI__API_KEY": "sk-upstream-openai-SECRET",
        "LOUPE__PROVIDERS__ANTHROPIC__BASE_URL": provider.url + "/v1",
        "LOUPE__PROVIDERS__ANTHROPIC__API_KEY": "sk-ant-upstream-SECRET",
    })
    oai = openai.OpenAI(base_url=loupe.base + "/v1", api_key="sk-client-dummy", max_retries=0)
    req = json.loads(fixture("openai_chat_request.json"))
    msgs = req["messages"]

    # Cache: a miss, then a hit with the same answer; streams replay identically.
    cache = {"Helicone-Cache-Enabled": "true"}
    r1 = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs, extra_headers=cache)
    r2 = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs, extra_headers=cache)
    assert r1.headers["helicone-cache"] == "MISS" and r2.headers["helicone-cache"] == "HIT"
    assert r2.headers["helicone-cache-bucket-idx"] == "0"
    assert r1.parse().choices[0].message.content == r2.parse().choices[0].message.content
    s1 = [c.model_dump() for c in oai.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                              extra_headers=cache)]
    s2 = [c.model_dump() for c in oai.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                              extra_headers=cache)]
    assert s1 == s2 and s1
    assert sum(1 for q in provider.requests if q["body"].get("stream")) == 1

    # Retries: two 503s, then the answer.
    retry = {"Helicone-Retry-Enabled": "true", "Helicone-Retry-Min-Timeout": "10", "Helicone-Retry-Max-Timeout": "50"}
    ok = oai.chat.completions.create(model="gpt-flaky", messages=msgs, extra_headers=retry)
    assert ok.choices[0].message.content

    # Fallback across providers: OpenAI's 500, then Claude, answered in OpenAI's shape.
    fb = oai.chat.completions.with_raw_response.create(
        model="gpt-down", messages=msgs, extra_headers={"Loupe-Fallback-Models": "claude-sonnet-4-5-20250929"})
    assert fb.headers["helicone-fallback-index"] == "1"
    assert fb.parse().choices[0].message.content

    # Rate limit: two calls per minute for this user; the third is a 429 the SDK understands.
    rl = {"Helicone-RateLimit-Policy": "2;w=60;s=user", "Helicone-User-Id": "u_rl"}
    for _ in range(2):
        oai.chat.completions.create(model="gpt-4o", messages=msgs, extra_headers=rl)
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="gpt-4o", messages=msgs, extra_headers=rl)
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.response.headers["helicone-ratelimit-remaining"] == "0"
    assert e.value.body["type"] == "rate_limit_error"

    # 4 cache calls + retry + fallback + 2 rate-limited-but-admitted (the refused one is not recorded).
    loupe.wait_rows(8)
    hits = loupe.hql("requests | where cache_hit | project cost_usd, cost_saved_usd, stream")
    assert len(hits) == 2
    assert all(float(h["cost_usd"]) == 0 and float(h["cost_saved_usd"]) > 0 for h in hits)
    flaky = loupe.hql('requests | where model == "gpt-flaky" | project attempt, attempts, status')
    assert flaky[0]["attempt"] == 3 and flaky[0]["status"] == 200
    tried = json.loads(flaky[0]["attempts"])
    assert [a["status"] for a in tried] == [503, 503]
    fell = loupe.hql("requests | where fallback_index == 1 | project provider, model, attempts")
    assert fell[0]["provider"] == "anthropic"
    assert json.loads(fell[0]["attempts"])[0]["model"] == "gpt-down"
