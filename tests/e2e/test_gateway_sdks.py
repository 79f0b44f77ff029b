"""The gateway with the official SDKs: only base_url changes. A mock provider on 127.0.0.1 (the
only mocked part) replays the recorded fixtures in testdata/providers; Loupe proxies, streams and
records; the recorded rows are then read back through /v1/hql."""
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest

from conftest import provider_fixture as fixture


class MockProvider:
    """OpenAI and Anthropic on one port: /v1/chat/completions, /v1/embeddings, /v1/messages."""

    def __init__(self):
        self.requests = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                provider.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body})
                if self.path == "/v1/chat/completions" and body.get("model") == "gpt-rate-limited":
                    return self.send(429, fixture("openai_error_429.json"), "application/json",
                                     {"retry-after": "1", "x-ratelimit-remaining-requests": "0",
                                      "x-request-id": "req_429"})
                if self.path == "/v1/chat/completions":
                    if body.get("stream"):
                        sse = fixture("openai_chat_stream.sse").decode()
                        if not (body.get("stream_options") or {}).get("include_usage"):
                            # Real OpenAI sends the usage chunk only when asked.
                            events = [e for e in sse.split("\n\n") if '"choices":[]' not in e]
                            sse = "\n\n".join(events)
                        return self.send(200, sse.encode(), "text/event-stream", {"x-request-id": "req_s"}, chunked=True)
                    return self.send(200, fixture("openai_chat_response.json"), "application/json",
                                     {"x-request-id": "req_1", "x-ratelimit-remaining-tokens": "149990"})
                if self.path == "/v1/embeddings":
                    n = len(body["input"]) if isinstance(body.get("input"), list) else 1
                    resp = {"object": "list", "model": "text-embedding-3-small",
                            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)],
                            "usage": {"prompt_tokens": 8 * n, "total_tokens": 8 * n}}
                    return self.send(200, json.dumps(resp).encode(), "application/json")
                if self.path == "/v1/messages":
                    if body.get("stream"):
                        return self.send(200, fixture("anthropic_stream.sse"), "text/event-stream", chunked=True)
                    return self.send(200, fixture("anthropic_messages_response.json"), "application/json",
                                     {"request-id": "req_a1", "anthropic-ratelimit-requests-remaining": "49"})
                self.send(404, b'{"error":{"message":"no such path","type":"not_found"}}', "application/json")

            def send(self, status, payload, ctype, headers=None, chunked=False):
                self.send_response(status)
                self.send_header("content-type", ctype)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if chunked:
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    # A few events per chunk, flushed one by one (a real stream, not one write).
                    for i in range(0, len(payload), 300):
                        part = payload[i:i + 300]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                        time.sleep(0.002)
                    self.wfile.write(b"0\r\n\r\n")
                else:
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
    p = MockProvider()
    yield p
    p.stop()


def test_openai_and_anthropic_sdks_through_the_gateway(loupe_factory, provider):
    loupe = loupe_factory(env={
        "LOUPE__PROVIDERS__OPENAI__BASE_URL": provider.url + "/v1",
        "LOUPE__PROVIDERS__OPENAI__API_KEY": "sk-upstream-openai-SECRET",
        "LOUPE__PROVIDERS__ANTHROPIC__BASE_URL": provider.url + "/v1",
        "LOUPE__PROVIDERS__ANTHROPIC__API_KEY": "sk-ant-upstream-SECRET",
    })
    headers = {"Helicone-Property-Feature": "search", "Helicone-User-Id": "u_7",
               "Helicone-Session-Id": "s_1", "Helicone-Session-Path": "/plan/search",
               "Loupe-Session-Name": "Trip"}
    oai = openai.OpenAI(base_url=loupe.base + "/v1", api_key="sk-client-dummy", default_headers=headers,
                        max_retries=0)
    req = json.loads(fixture("openai_chat_request.json"))

    # Plain chat.
    r = oai.chat.completions.with_raw_response.create(model=req["model"], messages=req["messages"],
                                                      extra_headers={"Helicone-Request-Id": "9b2f5c1e-3a4d-4e5f-8a7b-1c2d3e4f5a6b"})
    assert r.headers["helicone-id"] == "9b2f5c1e-3a4d-4e5f-8a7b-1c2d3e4f5a6b" == r.headers["loupe-id"]
    assert r.headers["x-request-id"] == "req_1"
    plain = r.parse()
    want = json.loads(fixture("openai_chat_response.json"))
    assert plain.choices[0].message.content == want["choices"][0]["message"]["content"]

    # Streamed chat: the client did not ask for usage, so it must not see the usage chunk.
    chunks = list(oai.chat.completions.create(model=req["model"], messages=req["messages"], stream=True,
                                              extra_headers={"Helicone-Property-Feature": "stream"}))
    assert chunks and all(c.choices for c in chunks), "the injected usage chunk leaked to the client"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text
    # Loupe asked the provider for usage, and stripped its own headers; the configured key went up.
    up = [q for q in provider.requests if q["path"] == "/v1/chat/completions"]
    assert up[1]["body"]["stream_options"] == {"include_usage": True}
    assert not any(k.startswith("helicone-") or k.startswith("loupe-") for q in up for k in q["headers"])
    assert all(q["headers"]["authorization"] == "Bearer sk-upstream-openai-SECRET" for q in up)

    # Embeddings.
    emb = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2

    # Upstream errors pass through unchanged (status, body, rate-limit headers).
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="gpt-rate-limited", messages=req["messages"])
    assert e.value.response.headers["retry-after"] == "1"

    # Anthropic SDK against /v1/messages, plain and streamed.
    ant = anthropic.Anthropic(base_url=loupe.base, api_key="sk-ant-client-dummy", default_headers=headers,
                              max_retries=0)
    areq = json.loads(fixture("anthropic_messages_request.json"))
    msg = ant.messages.create(model=areq["model"], max_tokens=areq.get("max_tokens", 100), messages=areq["messages"])
    assert msg.content
    with ant.messages.stream(model=areq["model"], max_tokens=areq.get("max_tokens", 100),
                             messages=areq["messages"]) as s:
        final = s.get_final_message()
    assert final.usage.output_tokens > 0
    aup = [q for q in provider.requests if q["path"] == "/v1/messages"]
    assert all(q["headers"]["x-api-key"] == "sk-ant-upstream-SECRET" for q in aup)

    # The OpenAI SDK calling a Claude model: translated to Messages and back, plain and streamed.
    tr = oai.chat.completions.create(model="claude-sonnet-4-5-20250929", messages=[
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Largest planet?"}],
        extra_headers={"Helicone-Property-Feature": "translated"})
    want_a = json.loads(fixture("anthropic_messages_response.json"))
    assert tr.choices[0].message.content == "".join(b["text"] for b in want_a["content"] if b["type"] == "text")
    assert tr.usage.completion_tokens == want_a["usage"]["output_tokens"]
    trs = list(oai.chat.completions.create(model="claude-sonnet-4-5-20250929", stream=True,
                                           stream_options={"include_usage": True},
                                           messages=[{"role": "user", "content": "Largest planet?"}]))
    assert "".join(c.choices[0].delta.content or "" for c in trs if c.choices)
    assert trs[-1].usage is not None and trs[-1].usage.prompt_tokens >= 1800
    sent = [q for q in provider.requests if q["path"] == "/v1/messages"][-2:]
    assert sent[0]["body"]["system"] == "Be terse." and sent[0]["body"]["max_tokens"] > 0
    assert sent[0]["headers"]["x-api-key"] == "sk-ant-upstream-SECRET"

    loupe.wait_rows(8)
    rows = {r["request_id"]: r for r in loupe.hql(
        "requests | project request_id, provider, model, path, status, stream, prompt_tokens, completion_tokens, "
        "cache_read_tokens, cache_write_tokens, total_tokens, cost_usd, price_known, user_id, session_id, "
        "session_path, session_name, feature = properties.feature, ttft_ms, latency_ms, error_type, "
        "retry = upstream_headers['retry-after'], source, request_body, response_body")}
    assert len(rows) == 8
    p = rows["9b2f5c1e-3a4d-4e5f-8a7b-1c2d3e4f5a6b"]
    u = want["usage"]
    assert (p["prompt_tokens"], p["completion_tokens"]) == (u["prompt_tokens"], u["completion_tokens"])
    assert p["provider"] == "openai" and p["model"] == "gpt-4o-mini" and p["path"] == "/v1/chat/completions"
    assert (p["user_id"], p["session_id"], p["session_path"], p["session_name"], p["feature"]) == \
        ("u_7", "s_1", "/plan/search", "Trip", "search")
    assert p["source"] == "gateway" and p["price_known"] and float(p["cost_usd"]) > 0
    streamed = [r for r in rows.values() if r["stream"] and r["provider"] == "openai"]
    assert len(streamed) == 1
    st = streamed[0]
    assert st["feature"] == "stream" and st["prompt_tokens"] == 17 and st["completion_tokens"] == 3
    assert st["ttft_ms"] is not None and 0 <= st["ttft_ms"] <= st["latency_ms"]
    limited = [r for r in rows.values() if r["status"] == 429]
    assert len(limited) == 1 and limited[0]["retry"] == "1" and limited[0]["error_type"]
    translated = [r for r in rows.values() if r["provider"] == "anthropic" and r["path"] == "/v1/chat/completions"]
    assert len(translated) == 2 and all(r["prompt_tokens"] > 0 and r["price_known"] for r in translated)
    anth = [r for r in rows.values() if r["provider"] == "anthropic" and r["path"] == "/v1/messages"]
    assert len(anth) == 2
    a_plain = [r for r in anth if not r["stream"]][0]
    a_stream = [r for r in anth if r["stream"]][0]
    assert a_plain["prompt_tokens"] > 0 and a_stream["prompt_tokens"] > 0
    assert a_stream["cache_write_tokens"] == 1800 and a_stream["ttft_ms"] is not None
    # No credential of any kind is stored.
    dump = json.dumps(list(rows.values()))
    for secret in ["SECRET", "sk-client-dummy", "sk-ant-client-dummy"]:
        assert secret not in dump


def test_omit_headers_and_keys_mode(loupe_factory, provider, tmp_path):
    data = tmp_path / "data"
    loupe_bin = os.environ.get("LOUPE_BIN", "target/debug/loupe")
    import subprocess
    key = subprocess.run([loupe_bin, "keys", "create", "--org", "acme", "--data-dir", str(data)],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    loupe = loupe_factory(data_dir=data, env={
        "LOUPE__PROVIDERS__OPENAI__BASE_URL": provider.url + "/v1",
        "LOUPE__PROVIDERS__OPENAI__API_KEY": "sk-upstream-SECRET",
    })
    req = json.loads(fixture("openai_chat_request.json"))
    # A provider key where a Loupe key belongs: 401 in OpenAI's shape, nothing forwarded.
    bad = openai.OpenAI(base_url=loupe.base + "/v1", api_key="sk-not-a-loupe-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model=req["model"], messages=req["messages"])
    assert "Loupe" in str(e.value)
    assert provider.requests == []
    # Gateway mode with the Loupe key; omit both bodies.
    ok = openai.OpenAI(base_url=loupe.base + "/v1", api_key=key, max_retries=0,
                       default_headers={"Helicone-Omit-Request": "true", "Loupe-Omit-Response": "TRUE"})
    ok.chat.completions.create(model=req["model"], messages=req["messages"])
    # Passthrough mode: Helicone-Auth carries the Loupe key, the caller's provider key goes up.
    pt = openai.OpenAI(base_url=loupe.base + "/v1", api_key="sk-caller-own-key", max_retries=0,
                       default_headers={"Helicone-Auth": f"Bearer {key}"})
    pt.chat.completions.create(model=req["model"], messages=req["messages"])
    assert provider.requests[0]["headers"]["authorization"] == "Bearer sk-upstream-SECRET"
    assert provider.requests[1]["headers"]["authorization"] == "Bearer sk-caller-own-key"

    def q(query):
        r = urllib.request.Request(loupe.base + "/v1/hql", data=json.dumps({"query": query}).encode(),
                                   method="POST", headers={"authorization": f"Bearer {key}"})
        with urllib.request.urlopen(r, timeout=60) as resp:
            b = json.loads(resp.read())
        return [dict(zip([c["name"] for c in b["columns"]], row)) for row in b["rows"]]

    end = time.monotonic() + 20
    while time.monotonic() < end and q("requests | count")[0]["count"] < 2:
        time.sleep(0.05)
    rows = q("requests | sort by created_at asc | project org_id, request_body, response_body, prompt_tokens")
    assert len(rows) == 2 and all(r["org_id"] == "acme" for r in rows)
    assert rows[0]["request_body"] is None and rows[0]["response_body"] is None
    assert rows[1]["request_body"] and rows[1]["response_body"] and rows[0]["prompt_tokens"] > 0
    assert "sk-caller-own-key" not in json.dumps(rows)


def test_openai_node_sdk_through_the_gateway(loupe_factory, provider):
    """The official openai npm package (tests/e2e/node, installed by scripts/test) with only baseURL
    changed: plain and streamed chat; the stream shows no usage chunk the client did not ask for."""
    import subprocess
    node_dir = os.path.join(os.path.dirname(__file__), "node")
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "openai")), "run ./scripts/test (npm ci)"
    loupe = loupe_factory(env={
        "LOUPE__PROVIDERS__OPENAI__BASE_URL": provider.url + "/v1",
        "LOUPE__PROVIDERS__OPENAI__API_KEY": "sk-upstream-SECRET",
    })
    out = subprocess.run(["node", "chat.mjs"], cwd=node_dir, env=dict(os.environ, LOUPE_URL=loupe.base),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    want = json.loads(fixture("openai_chat_response.json"))
    assert seen["plain"] == want["choices"][0]["message"]["content"]
    assert seen["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]
    assert seen["text"] and seen["emptyChoices"] == 0
    loupe.wait_rows(2)
    rows = loupe.hql("requests | project stream, client = properties.client, user_id, prompt_tokens, "
                      "completion_tokens, cost_usd, ttft_ms | sort by stream asc")
    assert [r["stream"] for r in rows] == [False, True]
    assert all(r["client"] == "node" and r["user_id"] == "node_user" for r in rows)
    assert rows[1]["prompt_tokens"] == 17 and rows[1]["completion_tokens"] == 3 and rows[1]["ttft_ms"] is not None
    assert rows[0]["cost_usd"] is not None and rows[1]["cost_usd"] is not None
