#!/usr/bin/env python3
"""HQL side by side: the queries/ suite over the same Parquet files, 2 threads per engine.

  Loupe   POST /v1/hql on the release server (HTTP round trip, JSON answer)
  HQL     the same query in-process (parse + plan + execute; `hql-bench run`)
  DF SQL  hand-written DataFusion SQL over the same table provider (`hql-bench run`)
  DuckDB  2.0 over the table's Parquet files (read_parquet, threads = 2)
  chDB    4.4 over the same files (file(..., Parquet), max_threads = 2)

Every engine gets one first run (not counted), then RUNS timed runs; the median is reported.
`ago(Nd)` is replaced by a fixed datetime (the end of the generated data) for every engine, so
all of them answer the same question. Ratios are per query and as a geomean with ClickBench's
+10 ms convention. Writes bench-results/hql.json and prints a table.

Usage: python3 benches/hql_side_by_side.py [--rows 10000000] [--runs 5] [--data-dir DIR]
(scripts/bench-hql builds the release binaries and sets up the venv.)
"""
import argparse
import datetime
import glob
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERIES = os.path.join(ROOT, "queries")

# Hand-written SQL for each queries/*.hql file, per engine. {T1}/{T7}/{T30}: cutoffs as literals.
SQL = {
    "cache_hit_rate": {
        "datafusion": """SELECT model, count(*) AS requests, count(*) FILTER (WHERE cache_hit) AS hits,
  sum(cost_usd) AS cost, CAST(count(*) FILTER (WHERE cache_hit) AS DOUBLE) / count(*) AS hit_rate
FROM requests WHERE org_id = 'default' AND created_at > {T7}
GROUP BY model ORDER BY hits DESC NULLS LAST""",
        "duckdb": """SELECT model, count(*) AS requests, count(*) FILTER (WHERE cache_hit) AS hits,
  sum(cost_usd) AS cost, CAST(count(*) FILTER (WHERE cache_hit) AS DOUBLE) / count(*) AS hit_rate
FROM requests WHERE org_id = 'default' AND created_at > {T7}
GROUP BY model ORDER BY hits DESC NULLS LAST""",
        "clickhouse": """SELECT model, count() AS requests, countIf(cache_hit) AS hits, sum(cost_usd) AS cost,
  hits / requests AS hit_rate
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T7}
GROUP BY model ORDER BY hits DESC""",
    },
    "cost_by_model_per_day": {
        "datafusion": """SELECT date_bin(INTERVAL '1 day', created_at, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, model,
  count(*) AS requests, sum(cost_usd) AS cost
FROM requests WHERE org_id = 'default' AND created_at > {T30}
GROUP BY 1, 2 ORDER BY bucket ASC NULLS LAST, cost DESC NULLS LAST""",
        "duckdb": """SELECT date_trunc('day', created_at) AS bucket, model, count(*) AS requests, sum(cost_usd) AS cost
FROM requests WHERE org_id = 'default' AND created_at > {T30}
GROUP BY 1, 2 ORDER BY bucket ASC NULLS LAST, cost DESC NULLS LAST""",
        "clickhouse": """SELECT toStartOfDay(created_at) AS bucket, model, count() AS requests, sum(cost_usd) AS cost
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T30}
GROUP BY bucket, model ORDER BY bucket ASC, cost DESC""",
    },
    "cost_per_workflow_step": {
        "datafusion": """SELECT properties['feature'] AS feature, count(*) AS requests, sum(cost_usd) AS cost,
  approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY CAST(latency_ms AS DOUBLE)) AS p95
FROM requests WHERE org_id = 'default' AND created_at > {T7}
  AND properties['feature'] IS NOT NULL AND properties['feature'] <> ''
GROUP BY 1 ORDER BY cost DESC NULLS LAST""",
        "duckdb": """SELECT properties['feature'] AS feature, count(*) AS requests, sum(cost_usd) AS cost,
  approx_quantile(latency_ms, 0.95) AS p95
FROM requests WHERE org_id = 'default' AND created_at > {T7}
  AND properties['feature'] IS NOT NULL AND properties['feature'] <> ''
GROUP BY 1 ORDER BY cost DESC NULLS LAST""",
        "clickhouse": """SELECT properties['feature'] AS feature, count() AS requests, sum(cost_usd) AS cost,
  quantile(0.95)(latency_ms) AS p95
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T7} AND properties['feature'] <> ''
GROUP BY feature ORDER BY cost DESC""",
    },
    "error_rate_by_model_status": {
        "datafusion": """SELECT model, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,
  count(*) FILTER (WHERE status = 429) AS rate_limited, count(*) FILTER (WHERE status >= 500) AS server_errors,
  CAST(count(*) FILTER (WHERE status >= 400) AS DOUBLE) / count(*) AS error_rate
FROM requests WHERE org_id = 'default' AND created_at > {T7}
GROUP BY model ORDER BY error_rate DESC NULLS LAST""",
        "duckdb": """SELECT model, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,
  count(*) FILTER (WHERE status = 429) AS rate_limited, count(*) FILTER (WHERE status >= 500) AS server_errors,
  CAST(count(*) FILTER (WHERE status >= 400) AS DOUBLE) / count(*) AS error_rate
FROM requests WHERE org_id = 'default' AND created_at > {T7}
GROUP BY model ORDER BY error_rate DESC NULLS LAST""",
        "clickhouse": """SELECT model, count() AS requests, countIf(status >= 400) AS errors,
  countIf(status = 429) AS rate_limited, countIf(status >= 500) AS server_errors, errors / requests AS error_rate
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T7}
GROUP BY model ORDER BY error_rate DESC""",
    },
    "latency_by_model_provider": {
        "datafusion": """SELECT provider, model, count(*) AS requests,
  approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(latency_ms AS DOUBLE)) AS p50,
  approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY CAST(latency_ms AS DOUBLE)) AS p95,
  approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY CAST(latency_ms AS DOUBLE)) AS p99
FROM requests WHERE org_id = 'default' AND created_at > {T1} AND status < 400
GROUP BY provider, model ORDER BY p95 DESC NULLS LAST""",
        "duckdb": """SELECT provider, model, count(*) AS requests, approx_quantile(latency_ms, 0.5) AS p50,
  approx_quantile(latency_ms, 0.95) AS p95, approx_quantile(latency_ms, 0.99) AS p99
FROM requests WHERE org_id = 'default' AND created_at > {T1} AND status < 400
GROUP BY provider, model ORDER BY p95 DESC NULLS LAST""",
        "clickhouse": """SELECT provider, model, count() AS requests, quantile(0.5)(latency_ms) AS p50,
  quantile(0.95)(latency_ms) AS p95, quantile(0.99)(latency_ms) AS p99
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T1} AND status < 400
GROUP BY provider, model ORDER BY p95 DESC""",
    },
    "tokens_per_day": {
        "datafusion": """SELECT date_bin(INTERVAL '1 day', created_at, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket,
  sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion, sum(cache_read_tokens) AS cache_read,
  sum(total_tokens) AS total
FROM requests WHERE org_id = 'default' AND created_at > {T30}
GROUP BY 1 ORDER BY bucket ASC NULLS LAST""",
        "duckdb": """SELECT date_trunc('day', created_at) AS bucket, sum(prompt_tokens) AS prompt,
  sum(completion_tokens) AS completion, sum(cache_read_tokens) AS cache_read, sum(total_tokens) AS total
FROM requests WHERE org_id = 'default' AND created_at > {T30}
GROUP BY 1 ORDER BY bucket ASC NULLS LAST""",
        "clickhouse": """SELECT toStartOfDay(created_at) AS bucket, sum(prompt_tokens) AS prompt,
  sum(completion_tokens) AS completion, sum(cache_read_tokens) AS cache_read, sum(total_tokens) AS total
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T30}
GROUP BY bucket ORDER BY bucket ASC""",
    },
    "top_sessions_by_cost": {
        "datafusion": """SELECT session_id, sum(cost_usd) AS cost, count(*) AS requests, min(created_at) AS started,
  max(completed_at) AS ended
FROM requests WHERE org_id = 'default' AND created_at > {T7} AND session_id IS NOT NULL AND session_id <> ''
GROUP BY session_id ORDER BY cost DESC NULLS LAST LIMIT 20""",
        "duckdb": """SELECT session_id, sum(cost_usd) AS cost, count(*) AS requests, min(created_at) AS started,
  max(completed_at) AS ended
FROM requests WHERE org_id = 'default' AND created_at > {T7} AND session_id IS NOT NULL AND session_id <> ''
GROUP BY session_id ORDER BY cost DESC NULLS LAST LIMIT 20""",
        "clickhouse": """SELECT session_id, sum(cost_usd) AS cost, count() AS requests, min(created_at) AS started,
  max(completed_at) AS ended
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T7} AND session_id <> ''
GROUP BY session_id ORDER BY cost DESC LIMIT 20""",
    },
    "top_users_by_cost": {
        "datafusion": """SELECT user_id, sum(cost_usd) AS cost, count(*) AS requests, sum(total_tokens) AS tokens
FROM requests WHERE org_id = 'default' AND created_at > {T7} AND user_id IS NOT NULL AND user_id <> ''
GROUP BY user_id ORDER BY cost DESC NULLS LAST LIMIT 20""",
        "duckdb": """SELECT user_id, sum(cost_usd) AS cost, count(*) AS requests, sum(total_tokens) AS tokens
FROM requests WHERE org_id = 'default' AND created_at > {T7} AND user_id IS NOT NULL AND user_id <> ''
GROUP BY user_id ORDER BY cost DESC NULLS LAST LIMIT 20""",
        "clickhouse": """SELECT user_id, sum(cost_usd) AS cost, count() AS requests, sum(total_tokens) AS tokens
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T7} AND user_id <> ''
GROUP BY user_id ORDER BY cost DESC LIMIT 20""",
    },
    "ttft_by_model": {
        "datafusion": """SELECT model, count(*) AS streams,
  approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(ttft_ms AS DOUBLE)) AS p50,
  approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY CAST(ttft_ms AS DOUBLE)) AS p95
FROM requests WHERE org_id = 'default' AND created_at > {T7} AND stream AND ttft_ms IS NOT NULL
GROUP BY model ORDER BY p95 DESC NULLS LAST""",
        "duckdb": """SELECT model, count(*) AS streams, approx_quantile(ttft_ms, 0.5) AS p50,
  approx_quantile(ttft_ms, 0.95) AS p95
FROM requests WHERE org_id = 'default' AND created_at > {T7} AND stream AND ttft_ms IS NOT NULL
GROUP BY model ORDER BY p95 DESC NULLS LAST""",
        "clickhouse": """SELECT model, count() AS streams, quantile(0.5)(ttft_ms) AS p50, quantile(0.95)(ttft_ms) AS p95
FROM {TABLE} WHERE org_id = 'default' AND created_at > {T7} AND stream AND ttft_ms IS NOT NULL
GROUP BY model ORDER BY p95 DESC""",
    },
}


def iso(micros):
    t = datetime.datetime.fromtimestamp(micros / 1e6, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cutoffs(end_micros):
    day = 86_400_000_000
    return {f"T{n}": end_micros - n * day for n in (1, 7, 30)}


def hql_text(name, cuts):
    src = open(os.path.join(QUERIES, name + ".hql")).read()
    def repl(m):
        return f"datetime({iso(cuts['T' + m.group(1)])})"
    out = re.sub(r"ago\((\d+)d\)", repl, src)
    assert "ago(" not in out, name
    return out


def sql_text(name, engine, cuts, table="requests"):
    s = SQL[name][engine]
    for k, v in cuts.items():
        if engine == "datafusion":
            lit = f"TIMESTAMP '{iso(v)}'"
        elif engine == "duckdb":
            lit = f"TIMESTAMPTZ '{iso(v).replace('T', ' ').replace('Z', '+00')}'"
        else:
            lit = f"toDateTime64('{iso(v)[:-1].replace('T', ' ')}', 6, 'UTC')"
        s = s.replace("{" + k + "}", lit)
    return s.replace("{TABLE}", table)


def active_files(table_dir):
    live = {}
    for log in sorted(glob.glob(os.path.join(table_dir, "_delta_log", "*.json"))):
        for line in open(log):
            a = json.loads(line)
            if "add" in a:
                live[a["add"]["path"]] = True
            elif "remove" in a:
                live.pop(a["remove"]["path"], None)
    return [os.path.join(table_dir, urllib.request.url2pathname(p)) for p in sorted(live)]


def timed(fn, runs):
    fn()  # first run, not counted
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), min(ts)


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "bench-results", "hql-data"))
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target"))
    args = ap.parse_args()
    bench_bin = os.path.join(args.target_dir, "release", "hql_bench")
    loupe_bin = os.path.join(args.target_dir, "release", "loupe")
    data = args.data_dir
    meta_path = os.path.join(data, "bench-meta.json")
    if not os.path.exists(meta_path) or json.load(open(meta_path))["rows"] != args.rows:
        subprocess.run(["rm", "-rf", data], check=True)
        os.makedirs(data)
        print(f"==> generating {args.rows} rows into {data}", flush=True)
        subprocess.run([bench_bin, "generate", "--data-dir", data, "--rows", str(args.rows)], check=True)
    meta = json.load(open(meta_path))
    cuts = cutoffs(meta["end_micros"])
    names = sorted(SQL)
    files = active_files(os.path.join(data, "tables", "requests"))
    size = sum(os.path.getsize(f) for f in files)
    print(f"==> {meta['rows']} rows in {len(files)} Parquet files, {size / 1e6:.0f} MB", flush=True)
    results = {n: {} for n in names}

    # In-process HQL and hand-written DataFusion SQL (one process, same table provider).
    spec = [{"name": n, "hql": hql_text(n, cuts), "datafusion": sql_text(n, "datafusion", cuts)} for n in names]
    spec_path = os.path.join(data, "spec.json")
    json.dump(spec, open(spec_path, "w"))
    out = subprocess.run([bench_bin, "run", "--data-dir", data, "--spec", spec_path, "--runs", str(args.runs)],
                         check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    for line in out.stdout.splitlines():
        r = json.loads(line)
        results[r["name"]].update(hql_inprocess=r["hql_ms"], hql_compile=r["hql_compile_ms"],
                                   datafusion_sql=r["datafusion_sql_ms"], hql_equals_sql=r["same_answer"])

    # Loupe over HTTP.
    log = open(os.path.join(data, "server.log"), "w")
    env = dict(os.environ, LOUPE_LOG="warn", LOUPE__QUERY__TIMEOUT_SECS="600", LOUPE__QUERY__MAX_CONCURRENT="1",
               LOUPE__STORAGE__FLUSH_INTERVAL_MS="86400000", LOUPE__STORAGE__COMPACT_INTERVAL_SECS="0")
    srv = subprocess.Popen([loupe_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                           stderr=log, stdout=log, env=env)
    try:
        base = None
        for _ in range(600):
            m = re.search(r"http://127\.0\.0\.1:\d+", open(log.name).read())
            if m:
                base = m.group(0)
                break
            time.sleep(0.1)
        if base is None:
            raise SystemExit("loupe did not start; see " + log.name)
        for n in names:
            body = json.dumps({"query": hql_text(n, cuts)}).encode()
            def call():
                req = urllib.request.Request(base + "/v1/hql", data=body, method="POST",
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=600) as r:
                    return json.loads(r.read())
            results[n]["loupe_http"], _ = timed(call, args.runs)
            results[n]["files_scanned"] = call()["stats"]["files_scanned"]
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=60)

    # DuckDB.
    import duckdb
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW requests AS SELECT * FROM read_parquet({files!r})")
    for n in names:
        q = sql_text(n, "duckdb", cuts)
        results[n]["duckdb"], _ = timed(lambda: con.execute(q).fetchall(), args.runs)
    con.close()

    # chDB.
    try:
        import chdb
        # ClickHouse globs cannot hold '/' inside {a,b}: use one glob, which must match exactly
        # the table's active files (true for data written by `hql-bench generate`: no compaction).
        pattern = os.path.join(data, "tables", "requests", "day=*", "*.parquet")
        if sorted(glob.glob(pattern)) != sorted(files):
            raise SystemExit("the table holds superseded files; regenerate the data for chDB")
        table = f"file('{pattern}', Parquet)"
        for n in names:
            q = sql_text(n, "clickhouse", cuts, table) + " SETTINGS max_threads = 2, session_timezone = 'UTC'"
            results[n]["chdb"], _ = timed(lambda: chdb.query(q, "CSV"), args.runs)
    except ImportError:
        print("chdb not installed; skipped (pip install chdb==4.4.0)")

    engines = ["loupe_http", "hql_inprocess", "datafusion_sql", "duckdb", "chdb"]
    print(f"\n{'query':<28}" + "".join(f"{e:>15}" for e in engines) + f"{'http/duckdb':>13}{'hql/dfsql':>11}")
    for n in names:
        r = results[n]
        cells = "".join(f"{r[e]:>15.1f}" if e in r else f"{'-':>15}" for e in engines)
        print(f"{n:<28}{cells}{(r['loupe_http'] + 10) / (r['duckdb'] + 10):>13.2f}"
              f"{r['hql_inprocess'] / r['datafusion_sql']:>11.3f}")
    summary = {}
    for e in engines[:-1] + (["chdb"] if all("chdb" in results[n] for n in names) else []):
        for base_e in ["duckdb", "chdb", "datafusion_sql"]:
            if e != base_e and all(base_e in results[n] for n in names):
                summary[f"{e}_vs_{base_e}_geomean_plus10ms"] = geomean(
                    [(results[n][e] + 10) / (results[n][base_e] + 10) for n in names])
    summary["hql_vs_datafusion_sql_geomean"] = geomean(
        [results[n]["hql_inprocess"] / results[n]["datafusion_sql"] for n in names])
    for k, v in summary.items():
        print(f"{k:<50} {v:.3f}")
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    json.dump({"rows": meta["rows"], "files": len(files), "bytes": size, "runs": args.runs,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "per_query_ms_median": results, "geomeans": summary},
              open(os.path.join(ROOT, "bench-results", "hql.json"), "w"), indent=2)
    print("==> wrote bench-results/hql.json")


if __name__ == "__main__":
    main()
