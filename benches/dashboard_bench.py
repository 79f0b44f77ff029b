"""Dashboard API latency on the HQL bench dataset (10M rows over 30 days by default).

Starts the release `loupe` twice on the same data directory: with the hourly roll-ups (as
shipped; it first waits until every roll-up table is in step, rebuilt if the data directory
predates one) and without them (`LOUPE__QUERY__USE_ROLLUPS=false`, the baseline), and times, per
page load:
  overview   overview_rollup_wave: the page's first wave (summary and time series without
             percentiles, models, providers), all at once, wall time until
             the last answer; overview_all: both waves at once (plus latency/TTFT percentiles and
             top users);
  requests   the first page of the requests list (50 rows), then the next page by cursor;
  detail     one request's detail drawer (with its `at` hint).
Medians over --runs loads after one warm-up; fails if any overview answer differs between the
two runs. Writes bench-results/dashboard.json.
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def iso(micros):
    return datetime.datetime.fromtimestamp(micros / 1e6, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=600) as r:
        return json.loads(r.read())


def start(loupe_bin, data, env_extra):
    log_path = os.path.join(data, "dashboard-server.log")
    log = open(log_path, "w")
    env = dict(os.environ, LOUPE_LOG="warn", LOUPE__QUERY__TIMEOUT_SECS="600",
               LOUPE__STORAGE__FLUSH_INTERVAL_MS="86400000", LOUPE__STORAGE__COMPACT_INTERVAL_SECS="0", **env_extra)
    srv = subprocess.Popen([loupe_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                           stderr=log, stdout=log, env=env)
    for _ in range(1200):
        m = re.search(r"http://127\.0\.0\.1:\d+", open(log_path).read())
        if m:
            return srv, m.group(0)
        if srv.poll() is not None:
            break
        time.sleep(0.1)
    srv.kill()
    raise SystemExit("loupe did not start; see " + log_path)


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


# One query per roll-up table (see docs/hql.md): its plan names the table once it is in step.
ROLLUP_PROBES = {
    "requests_hourly": "requests | summarize count() by model",
    "requests_latency_hourly": "requests | summarize n = count() by b = toint(log10(latency_ms + 1) * 200)",
    "requests_ttft_hourly": "requests | summarize n = count() by b = toint(log10(ttft_ms + 1) * 200)",
    "requests_users_hourly": "requests | summarize n = count() by user_id",
}


def scans(plan, table):
    """True if the plan text scans `table` itself (not `<table>_flushed`)."""
    return any(l.strip() == f"TableScan: {table}" or l.strip().startswith(f"TableScan: {table} ")
               for l in plan.splitlines())


def wait_for_rollups(base, timeout_s=1800):
    """Until every roll-up is in step (a data directory from before one is rebuilt at start)."""
    t = time.time()
    while True:
        missing = [name for name, q in ROLLUP_PROBES.items()
                   if not scans(post(base, "/v1/hql/explain", {"query": q})["logical"], name)]
        if not missing:
            return round(time.time() - t, 1)
        if time.time() - t > timeout_s:
            raise SystemExit(f"roll-ups not in step after {timeout_s} s: {missing}")
        time.sleep(2)


def timed(fn, runs):
    fn()  # warm-up (file metadata, page cache)
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": round(statistics.median(xs), 1), "min_ms": round(min(xs), 1), "max_ms": round(max(xs), 1)}


def measure(base, q, runs):
    fast = [  # the roll-up-backed first wave (cards, charts, models, providers)
        f"/v1/analytics/summary?{q}&percentiles=false",
        f"/v1/analytics/timeseries?{q}&percentiles=false",
        f"/v1/analytics/breakdown?{q}&by=model&metric=cost&top=10",
        f"/v1/analytics/breakdown?{q}&by=provider&metric=requests&top=10",
    ]
    slow = [  # the second wave: latency/TTFT percentiles, top users
        f"/v1/analytics/summary?{q}&percentiles=only",
        f"/v1/analytics/timeseries?{q}&percentiles=only",
        f"/v1/analytics/breakdown?{q}&by=user&metric=cost&top=10",
    ]
    pool = concurrent.futures.ThreadPoolExecutor(len(fast) + len(slow))

    def load(calls):
        return lambda: list(pool.map(lambda p: get(base, p), calls))

    out = {"overview_rollup_wave": timed(load(fast), runs), "overview_all": timed(load(fast + slow), runs)}
    out["overview_calls"] = {p.split("/v1/analytics/")[1].replace(q + "&", "").replace(q, ""):
                             timed(lambda p=p: get(base, p), max(3, runs // 2)) for p in fast + slow}
    first = get(base, f"/v1/analytics/requests?{q}&limit=50")
    out["requests_first_page"] = timed(lambda: get(base, f"/v1/analytics/requests?{q}&limit=50"), runs)
    cur = urllib.parse.quote(first["next_cursor"])
    out["requests_next_page"] = timed(lambda: get(base, f"/v1/analytics/requests?{q}&limit=50&cursor={cur}"), runs)
    r = first["requests"][0]
    at = urllib.parse.quote(r["created_at"])
    out["request_detail"] = timed(lambda: get(base, f"/v1/analytics/requests/{r['request_id']}?at={at}"), runs)
    out["requests_total"] = get(base, f"/v1/analytics/summary?{q}")["requests"]
    pool.shutdown()
    return out, {p: get(base, p) for p in fast + slow}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "bench-results", "hql-data"))
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target"))
    ap.add_argument("--profile-dir", default="release")
    ap.add_argument("--no-wait-rollups", action="store_true",
                    help="do not wait for every roll-up table to be in step (a build that lacks some)")
    args = ap.parse_args()
    loupe_bin = os.path.join(args.target_dir, args.profile_dir, "loupe")
    data = args.data_dir
    meta_path = os.path.join(data, "bench-meta.json")
    if not os.path.exists(meta_path) or json.load(open(meta_path))["rows"] != args.rows:
        bench_bin = os.path.join(args.target_dir, args.profile_dir, "hql_bench")
        subprocess.run(["rm", "-rf", data], check=True)
        os.makedirs(data)
        print(f"==> generating {args.rows} rows into {data}", flush=True)
        subprocess.run([bench_bin, "generate", "--data-dir", data, "--rows", str(args.rows)], check=True)
    meta = json.load(open(meta_path))
    # As the dashboard asks for "last 30 days": the range ends at the next whole hour.
    hour = 3_600_000_000
    end = (meta["end_micros"] // hour + 1) * hour
    q = urllib.parse.urlencode({"from": iso(end - 30 * 86_400_000_000), "to": iso(end)})
    results = {"rows": meta["rows"], "days": meta["days"], "runs": args.runs, "range": "30d"}
    answers = {}
    for name, env in [("rollup", {}), ("no_rollup_baseline", {"LOUPE__QUERY__USE_ROLLUPS": "false"})]:
        srv, base = start(loupe_bin, data, env)
        try:
            print(f"==> {name}", flush=True)
            if not env and not args.no_wait_rollups:
                waited = wait_for_rollups(base)
                print(f"    roll-ups in step after {waited} s", flush=True)
            results[name], answers[name] = measure(base, q, args.runs)
            print(json.dumps(results[name], indent=1), flush=True)
        finally:
            srv.send_signal(signal.SIGTERM)
            srv.wait(timeout=120)
    r, b = results["rollup"], results["no_rollup_baseline"]
    # The roll-ups change the speed, never the answer.
    differ = [p for p in answers["rollup"] if answers["rollup"][p] != answers["no_rollup_baseline"][p]]
    if differ:
        raise SystemExit(f"answers differ with and without the roll-ups: {differ}")
    results["answers_equal"] = True
    results["ratios_vs_baseline"] = {k: round(r[k]["p50_ms"] / b[k]["p50_ms"], 3)
                                     for k in ["overview_rollup_wave", "overview_all", "requests_first_page", "requests_next_page", "request_detail"]}
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    json.dump(results, open(os.path.join(ROOT, "bench-results", "dashboard.json"), "w"), indent=1)
    print(json.dumps({"overview_rollup_wave_p50_ms": r["overview_rollup_wave"]["p50_ms"],
                      "overview_all_p50_ms": r["overview_all"]["p50_ms"], "requests_first_page_p50_ms": r["requests_first_page"]["p50_ms"],
                      "ratios_vs_baseline": results["ratios_vs_baseline"]}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
