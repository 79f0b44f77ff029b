"""The dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core from
tests/e2e/browser): sign in with an API key, see the right totals on the overview, filter by a
property, open a request, open a session tree (and an OpenTelemetry-traced session's spans), run HQL and see a syntax error with its caret,
create an API key on the settings page (shown once, copied, usable at once) and revoke it (refused
at once).
Screenshots are saved under test-artifacts/dashboard/ (gitignored)."""
import json
import os
import shutil
import subprocess
import warnings

import pytest

from conftest import LOUPE_BIN, LOUPE_GEN_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROWSER_DIR = os.path.join(ROOT, "tests", "e2e", "browser")
ARTIFACTS = os.path.join(ROOT, "test-artifacts", "dashboard")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FROM, TO = "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z"


def skip_loudly(why):
    msg = f"BROWSER TEST SKIPPED: {why}"
    print("\n" + "!" * len(msg) + "\n" + msg + "\n" + "!" * len(msg))
    warnings.warn(msg)
    pytest.skip(msg)


def test_dashboard_in_headless_chromium(loupe_factory, tmp_path):
    if not (os.path.exists(CHROMIUM) and shutil.which("node")):
        skip_loudly(f"{CHROMIUM} or node is missing (./scripts/test installs Debian's chromium with apt-get)")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        skip_loudly("playwright-core is not installed (./scripts/test runs npm ci in tests/e2e/browser)")
    data_dir = tmp_path / "data"
    key = subprocess.run([LOUPE_BIN, "keys", "create", "--org", "acme", "--data-dir", str(data_dir)],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    ndjson = tmp_path / "r.ndjson"
    subprocess.run([LOUPE_GEN_BIN, "--count", "4000", "--seed", "9", "--days", "2", "--start", FROM,
                    "--users", "80", "--bodies", "--out", str(ndjson)], check=True, timeout=300)
    loupe = loupe_factory(data_dir=data_dir)
    lines = ndjson.read_bytes().splitlines()
    for i in range(0, len(lines), 1000):
        loupe.post("/v1/ingest", b"\n".join(lines[i:i + 1000]), headers={"authorization": f"Bearer {key}"})
    # One OpenTelemetry-traced session: a workflow span, a tool span and an LLM span under it.
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    t0 = 1_793_534_400 * 1_000_000_000  # 2026-11-01T12:00:00Z, in range
    sess = {"key": "traceloop.association.properties.Helicone-Session-Id", "value": {"stringValue": "otel-sess"}}
    span = lambda sid, name, start_ms, end_ms, parent=None, attrs=(), **kw: {  # noqa: E731
        "traceId": trace, "spanId": sid, "name": name, "parentSpanId": parent or "",
        "startTimeUnixNano": str(t0 + start_ms * 1_000_000), "endTimeUnixNano": str(t0 + end_ms * 1_000_000),
        "attributes": [sess, *attrs], **kw}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        span("00f067aa0ba902b7", "answer.workflow", 0, 900),
        span("00f067aa0ba902b8", "search.tool", 10, 100, "00f067aa0ba902b7", status={"code": 2, "message": "index down"}),
        span("00f067aa0ba902b9", "openai.chat", 120, 800, "00f067aa0ba902b7", kind=3, attrs=[
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "20"}}]),
    ]}]}]}
    status, _ = loupe.post("/v1/traces", json.dumps(body).encode(), "application/json",
                           {"authorization": f"Bearer {key}"})
    assert status == 200
    loupe.stop()  # flush to Parquet: the overview is answered from the hourly roll-up
    loupe = loupe_factory(data_dir=data_dir)

    rng = f"created_at >= datetime({FROM}) and created_at < datetime({TO})"
    total = loupe.hql(key=key, query=f"requests | where {rng} | summarize n = count(), e = countif(status >= 400)")[0]
    chat = loupe.hql(key=key, query=f'requests | where {rng} and properties.feature == "chat" | count')[0]["count"]
    assert total["n"] == 4001 and chat > 0  # the generated requests and the traced LLM call

    os.makedirs(ARTIFACTS, exist_ok=True)
    cfg = {"base": loupe.base, "key": key, "org": "acme", "from": FROM, "to": TO, "artifacts": ARTIFACTS,
           "otel_session": "otel-sess",
           "expect": {"requests": total["n"], "errors": total["e"], "chat_requests": chat}}
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "dashboard.mjs"), json.dumps(cfg)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "CHROMIUM": CHROMIUM})
    print(r.stdout)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\nscreenshots: {ARTIFACTS}"
    for shot in ["02-overview", "03-filter-by-property", "04-request-detail", "05-session-tree", "05b-session-spans",
                 "06-hql-syntax-error",
                 "09-key-created", "10-key-revoked"]:
        assert os.path.getsize(os.path.join(ARTIFACTS, f"{shot}.png")) > 10_000
