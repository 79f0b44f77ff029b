#!/usr/bin/env python3
"""Gateway overhead, side by side in one run (wrk, loopback only, bounded runs):

  direct  wrk → mock provider
  naive   wrk → benches' naive axum+reqwest forwarder (records nothing) → mock provider
  loupe   wrk → `loupe serve` (recording every call, fsync WAL) → mock provider
  litellm wrk → LiteLLM proxy (litellm[proxy]==1.106.2, 1 worker, in .venv-litellm) → mock provider

The mock provider and wrk are pinned to CPU 1, the proxy under test to CPU 0. Reports p50/p99 at
c=1 and the latency each proxy adds over direct, req/s at c=16, the proxy's peak RSS and its CPU
time per request; then, for each proxy, the time to first token of a streamed call (a raw-socket
client timing the first content chunk; the mock sends it at once and the rest 2 ms apart) and, in a
fresh Loupe process, the RSS after a steady 1k req/s. Writes bench-results/gateway.json.
Usage: python3 benches/gateway_side_by_side.py [--seconds 10] [--no-litellm]
       (scripts/bench-gateway builds first and installs LiteLLM)
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name the largest planet."}]})
LUA = """wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.headers["Helicone-Property-Feature"] = "bench"
""" % json.dumps(BODY)


def start(cmd, env=None, cpu=None, ready=r"listening on (http://127\.0\.0\.1:\d+)", tries=600):
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    log = tempfile.NamedTemporaryFile("w+", delete=False)
    p = subprocess.Popen(cmd, stderr=log, stdout=log, env=dict(os.environ, **(env or {})))
    for _ in range(tries):
        if ready.startswith("http://"):  # a fixed address: ready once it accepts connections
            try:
                socket.create_connection(tuple(ready[7:].rsplit(":", 1)), timeout=1).close()
                return p, ready
            except OSError:
                pass
        else:
            m = re.search(ready, open(log.name).read())
            if m:
                return p, m.group(1)
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise SystemExit(f"{cmd[0]} did not start: {open(log.name).read()[-2000:]}")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def tree(pid):
    """pid and all its descendants (LiteLLM's uvicorn may fork)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out


def cpu_ticks(pid):
    total = 0
    for p in tree(pid):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime + stime
        except OSError:
            pass
    return total


def rss_kb(pid, field="VmHWM"):
    total = 0
    for p in tree(pid):
        try:
            m = re.search(field + r":\s+(\d+)", open(f"/proc/{p}/status").read())
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


def ttft(url, n):
    """Time to the first content chunk of n sequential streamed calls on one keep-alive connection."""
    host, port = url.split("//")[1].split(":")
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "Name the largest planet."}]}).encode()
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
           f"Authorization: Bearer sk-bench\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    s = socket.create_connection((host, int(port)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(req)
            buf, first = b"", None
            for _ in range(10000):  # bounded: a reply is a few KB
                d = s.recv(65536)
                if not d:
                    raise SystemExit(f"{url} closed the connection mid-stream: {buf[-500:]!r}")
                buf += d
                if first is None and b'"content"' in buf.split(b"\r\n\r\n", 1)[-1]:
                    first = time.perf_counter() - t0
                if b"[DONE]" in buf and buf.endswith(b"0\r\n\r\n"):
                    break
            else:
                raise SystemExit(f"{url}: stream did not end")
            if first is None:
                raise SystemExit(f"{url}: no content chunk in {buf[:800]!r}")
            times.append(first * 1000)
    finally:
        s.close()
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p99_ms": times[int(len(times) * 0.99) - 1], "n": n}


def wrk(url, conns, seconds, script):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "-s", script, url + "/v1/chat/completions"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    def ms(label):
        m = re.search(label + r"%\s+([\d.]+)(us|ms|s)\b", out)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} failed requests through {url}:\n{out}")
    return {"p50_ms": ms("50"), "p99_ms": ms("99"), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": reqs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-litellm", action="store_true")
    args = ap.parse_args()
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(LUA)
    script.close()
    # 10 connections, each waiting 10 ms before its next request: a steady ~1k req/s.
    paced = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    paced.write(LUA + "function delay()\n  return 10\nend\n")
    paced.close()
    litellm = os.path.join(ROOT, ".venv-litellm", "bin", "litellm")
    mock, mock_url = start([os.path.join(REL, "mock_upstream")], cpu=1)
    results = {}
    try:
        results["direct"] = {"c1": wrk(mock_url, 1, args.seconds, script.name),
                             "c16": wrk(mock_url, 16, args.seconds, script.name),
                             "ttft": ttft(mock_url, 300)}
        data = tempfile.mkdtemp()
        loupe_env = {"LOUPE_LOG": "warn", "LOUPE__PROVIDERS__OPENAI__BASE_URL": mock_url + "/v1",
                     "LOUPE__PROVIDERS__OPENAI__API_KEY": "sk-bench"}
        proxies = {
            "naive": ([os.path.join(REL, "naive_forwarder"), "--upstream", mock_url], {}, {}),
            "loupe": ([os.path.join(REL, "loupe"), "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                      loupe_env, {}),
        }
        if not args.no_litellm:
            if not os.path.exists(litellm):
                raise SystemExit("LiteLLM is not installed in .venv-litellm (scripts/bench-gateway does it), "
                                 "or pass --no-litellm")
            cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            cfg.write("model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n"
                      "      model: openai/gpt-4o-mini\n"
                      f"      api_base: {mock_url}/v1\n      api_key: sk-bench\n")
            cfg.close()
            port = socket.socket()
            port.bind(("127.0.0.1", 0))
            free = port.getsockname()[1]
            port.close()
            proxies["litellm"] = ([litellm, "--config", cfg.name, "--host", "127.0.0.1", "--port", str(free),
                                   "--num_workers", "1"],
                                  {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                                   "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "True",
                                   # no auth at all: the cheapest setting for LiteLLM
                                   "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"},
                                  {"ready": f"http://127.0.0.1:{free}", "tries": 2400})
        for name, (cmd, env, how) in proxies.items():
            p, url = start(cmd, env, cpu=0, **how)
            try:
                wrk(url, 4, 2, script.name)  # warm-up, not counted
                t0 = cpu_ticks(p.pid)
                c1 = wrk(url, 1, args.seconds, script.name)
                c16 = wrk(url, 16, args.seconds, script.name)
                ticks = cpu_ticks(p.pid) - t0
                hz = os.sysconf("SC_CLK_TCK")
                results[name] = {"c1": c1, "c16": c16, "rss_mb": rss_kb(p.pid) / 1024,
                                 "cpu_us_per_request": ticks / hz * 1e6 / (c1["requests"] + c16["requests"]),
                                 "ttft": ttft(url, 300 if name != "litellm" else 100)}
            finally:
                stop(p)
        # Memory at a steady 1k req/s, in a fresh process (the c=16 run above sets a higher peak).
        for name in ("naive", "loupe"):
            cmd, env, how = proxies[name]
            if name == "loupe":
                cmd = cmd[:-1] + [tempfile.mkdtemp()]
            p, url = start(cmd, env, cpu=0, **how)
            try:
                idle = rss_kb(p.pid, "VmRSS") / 1024
                r = wrk(url, 10, max(args.seconds, 30), paced.name)
                # RSS counts the binary's code pages too (clean, shared, evictable: ~70 MB of Loupe's
                # 200 MB binary once DataFusion/Delta code has run); RssAnon is the process's own memory.
                results[name]["at_1k_rps"] = {"rps": r["rps"], "idle_rss_mb": idle,
                                              "rss_mb": rss_kb(p.pid, "VmRSS") / 1024,
                                              "anon_rss_mb": rss_kb(p.pid, "RssAnon") / 1024,
                                              "file_rss_mb": rss_kb(p.pid, "RssFile") / 1024,
                                              "peak_rss_mb": rss_kb(p.pid) / 1024}
            finally:
                stop(p)
        if "loupe" in results:
            # Every call through Loupe was recorded (warm-up included).
            q = subprocess.run([os.path.join(REL, "loupe"), "query", "--data-dir", data, "--format", "json",
                                "requests | summarize n = count(), cost = sum(cost_usd)"],
                               capture_output=True, text=True, timeout=120)
            results["loupe"]["recorded"] = json.loads(q.stdout)["rows"][0] if q.returncode == 0 else q.stderr
    finally:
        stop(mock)
    d = results["direct"]
    names = [n for n in ("naive", "loupe", "litellm") if n in results]
    for name in names:
        r = results[name]
        r["added_p50_ms"] = r["c1"]["p50_ms"] - d["c1"]["p50_ms"]
        r["added_p99_ms"] = r["c1"]["p99_ms"] - d["c1"]["p99_ms"]
        r["ttft_added_p50_ms"] = r["ttft"]["p50_ms"] - d["ttft"]["p50_ms"]
        r["ttft_added_p99_ms"] = r["ttft"]["p99_ms"] - d["ttft"]["p99_ms"]
    lo, nv = results["loupe"], results["naive"]
    summary = {
        "loupe_added_p99_vs_naive_added_p99": lo["added_p99_ms"] / nv["added_p99_ms"] if nv["added_p99_ms"] > 0 else None,
        "loupe_rps_c16_vs_naive": lo["c16"]["rps"] / nv["c16"]["rps"],
        "loupe_rps_c16_vs_direct": lo["c16"]["rps"] / d["c16"]["rps"],
        "loupe_cpu_us_per_request_vs_naive": lo["cpu_us_per_request"] / nv["cpu_us_per_request"],
        "loupe_ttft_added_p50_ms": lo["ttft_added_p50_ms"],
        "naive_ttft_added_p50_ms": nv["ttft_added_p50_ms"],
        "loupe_rss_mb_at_1k_rps": lo["at_1k_rps"]["rss_mb"],
        "loupe_anon_rss_mb_at_1k_rps": lo["at_1k_rps"]["anon_rss_mb"],
    }
    if "litellm" in results:
        ll = results["litellm"]
        summary["loupe_rps_c16_vs_litellm"] = lo["c16"]["rps"] / ll["c16"]["rps"]
        summary["litellm_added_p50_vs_loupe_added_p50"] = (ll["added_p50_ms"] / lo["added_p50_ms"]
                                                          if lo["added_p50_ms"] > 0 else None)
    print(f"{'':8}{'p50 c1':>10}{'p99 c1':>10}{'+p50':>9}{'+p99':>9}{'req/s c16':>12}{'RSS MB':>9}"
          f"{'CPU µs/req':>12}{'TTFT p50':>10}{'+TTFT p50':>11}{'+TTFT p99':>11}")
    for name in ["direct"] + names:
        r = results[name]
        print(f"{name:8}{r['c1']['p50_ms']:>10.3f}{r['c1']['p99_ms']:>10.3f}"
              f"{r.get('added_p50_ms', 0):>9.3f}{r.get('added_p99_ms', 0):>9.3f}{r['c16']['rps']:>12.0f}"
              f"{r.get('rss_mb', 0):>9.1f}{r.get('cpu_us_per_request', 0):>12.1f}{r['ttft']['p50_ms']:>10.3f}"
              f"{r.get('ttft_added_p50_ms', 0):>11.3f}{r.get('ttft_added_p99_ms', 0):>11.3f}")
    for name in ("naive", "loupe"):
        a = results[name]["at_1k_rps"]
        print(f"{name} at {a['rps']:.0f} req/s: RSS {a['rss_mb']:.1f} MB = anon {a['anon_rss_mb']:.1f} + "
              f"file {a['file_rss_mb']:.1f} (idle {a['idle_rss_mb']:.1f}, peak {a['peak_rss_mb']:.1f})")
    for k, v in summary.items():
        print(f"{k:<45} {v if v is None else round(v, 3)}")
    print("recorded by loupe:", results["loupe"].get("recorded"))
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    json.dump({"results": results, "ratios": summary}, open(os.path.join(ROOT, "bench-results", "gateway.json"), "w"),
              indent=2)


if __name__ == "__main__":
    main()
