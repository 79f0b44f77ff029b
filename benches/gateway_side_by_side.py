#!/usr/bin/env python3
"""Gateway overhead, side by side in one run (wrk, loopback only, bounded runs):

  direct  wrk → mock provider
  naive   wrk → benches' naive axum+reqwest forwarder (records nothing) → mock provider
  loupe   wrk → `loupe serve` (recording every call, fsync WAL) → mock provider

The mock provider and wrk are pinned to CPU 1, the proxy under test to CPU 0. Reports p50/p99 at
c=1 and the latency each proxy adds over direct, req/s at c=16, the proxy's peak RSS and its CPU
time per request. Writes bench-results/gateway.json.
Usage: python3 benches/gateway_side_by_side.py [--seconds 10]   (scripts/bench-gateway builds first)
"""
import argparse
import json
import os
import re
import signal
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


def start(cmd, env=None, cpu=None):
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    log = tempfile.NamedTemporaryFile("w+", delete=False)
    p = subprocess.Popen(cmd, stderr=log, stdout=log, env=dict(os.environ, **(env or {})))
    for _ in range(600):
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", open(log.name).read())
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


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


def rss_kb(pid):
    m = re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read())
    return int(m.group(1)) if m else 0


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
    args = ap.parse_args()
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(LUA)
    script.close()
    mock, mock_url = start([os.path.join(REL, "mock_upstream")], cpu=1)
    results = {}
    try:
        results["direct"] = {"c1": wrk(mock_url, 1, args.seconds, script.name),
                             "c16": wrk(mock_url, 16, args.seconds, script.name)}
        data = tempfile.mkdtemp()
        proxies = {
            "naive": ([os.path.join(REL, "naive_forwarder"), "--upstream", mock_url], {}),
            "loupe": ([os.path.join(REL, "loupe"), "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                      {"LOUPE_LOG": "warn", "LOUPE__PROVIDERS__OPENAI__BASE_URL": mock_url + "/v1",
                       "LOUPE__PROVIDERS__OPENAI__API_KEY": "sk-bench"}),
        }
        for name, (cmd, env) in proxies.items():
            p, url = start(cmd, env, cpu=0)
            try:
                wrk(url, 4, 2, script.name)  # warm-up, not counted
                t0 = cpu_ticks(p.pid)
                c1 = wrk(url, 1, args.seconds, script.name)
                c16 = wrk(url, 16, args.seconds, script.name)
                ticks = cpu_ticks(p.pid) - t0
                hz = os.sysconf("SC_CLK_TCK")
                results[name] = {"c1": c1, "c16": c16, "rss_mb": rss_kb(p.pid) / 1024,
                                 "cpu_us_per_request": ticks / hz * 1e6 / (c1["requests"] + c16["requests"])}
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
    for name in ("naive", "loupe"):
        r = results[name]
        r["added_p50_ms"] = r["c1"]["p50_ms"] - d["c1"]["p50_ms"]
        r["added_p99_ms"] = r["c1"]["p99_ms"] - d["c1"]["p99_ms"]
    lo, nv = results["loupe"], results["naive"]
    summary = {
        "loupe_added_p99_vs_naive_added_p99": lo["added_p99_ms"] / nv["added_p99_ms"] if nv["added_p99_ms"] > 0 else None,
        "loupe_rps_c16_vs_naive": lo["c16"]["rps"] / nv["c16"]["rps"],
        "loupe_rps_c16_vs_direct": lo["c16"]["rps"] / d["c16"]["rps"],
        "loupe_cpu_us_per_request_vs_naive": lo["cpu_us_per_request"] / nv["cpu_us_per_request"],
    }
    print(f"{'':8}{'p50 c1':>10}{'p99 c1':>10}{'+p50':>9}{'+p99':>9}{'req/s c16':>12}{'RSS MB':>9}{'CPU µs/req':>12}")
    for name in ("direct", "naive", "loupe"):
        r = results[name]
        print(f"{name:8}{r['c1']['p50_ms']:>10.3f}{r['c1']['p99_ms']:>10.3f}"
              f"{r.get('added_p50_ms', 0):>9.3f}{r.get('added_p99_ms', 0):>9.3f}{r['c16']['rps']:>12.0f}"
              f"{r.get('rss_mb', 0):>9.1f}{r.get('cpu_us_per_request', 0):>12.1f}")
    for k, v in summary.items():
        print(f"{k:<45} {v if v is None else round(v, 3)}")
    print("recorded by loupe:", results["loupe"].get("recorded"))
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    json.dump({"results": results, "ratios": summary}, open(os.path.join(ROOT, "bench-results", "gateway.json"), "w"),
              indent=2)


if __name__ == "__main__":
    main()
