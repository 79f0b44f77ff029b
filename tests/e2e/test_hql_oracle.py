"""Oracle: the dashboard questions asked in HQL over /v1/hql and in DuckDB SQL over the same
Parquet files (the Delta table's active files) give the same answers: exact for counts and sums,
percentiles within the t-digest's rank bound."""
import decimal
import os
import subprocess

import duckdb

from conftest import LOUPE_GEN_BIN
from test_duckdb_interop import active_files


def dec(v):
    return None if v is None else decimal.Decimal(str(v))


def test_hql_matches_duckdb(loupe_factory, tmp_path):
    ndjson = tmp_path / "r.ndjson"
    subprocess.run([LOUPE_GEN_BIN, "--count", "30000", "--seed", "5", "--days", "5", "--out", str(ndjson)],
                   check=True, timeout=300)
    data_dir = tmp_path / "data"
    loupe = loupe_factory(data_dir=data_dir)
    lines = ndjson.read_bytes().splitlines()
    for i in range(0, len(lines), 5000):
        loupe.post("/v1/ingest", b"\n".join(lines[i:i + 5000]))
    loupe.stop()  # flush everything to Parquet
    loupe = loupe_factory(data_dir=data_dir)
    files = active_files(os.path.join(str(data_dir), "tables", "requests"))
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(f"CREATE VIEW requests AS SELECT * FROM read_parquet({files!r}, hive_partitioning = true)")

    # Cost and count per model per day: exact.
    got = {(r["day"][:10], r["model"]): (r["requests"], dec(r["cost"])) for r in loupe.hql(
           "requests | summarize requests = count(), cost = sum(cost_usd) by day = bin(created_at, 1d), model")}
    want = {(str(d), m): (n, dec(c)) for d, m, n, c in con.execute(
        "SELECT CAST(date_trunc('day', created_at AT TIME ZONE 'UTC') AS DATE), model, count(*), sum(cost_usd) "
        "FROM requests GROUP BY ALL").fetchall()}
    assert got == want

    # Top users by cost: exact.
    got = [(r["user_id"], dec(r["cost"]), r["requests"]) for r in loupe.hql(
           "requests | where isnotempty(user_id) | summarize cost = sum(cost_usd), requests = count() by user_id | top 10 by cost desc")]
    want = [(u, dec(c), n) for u, c, n in con.execute(
        "SELECT user_id, sum(cost_usd) c, count(*) FROM requests WHERE user_id IS NOT NULL AND user_id <> '' "
        "GROUP BY user_id ORDER BY c DESC NULLS LAST LIMIT 10").fetchall()]
    assert got == want

    # Error counts and tokens per model: exact.
    got = {r["model"]: (r["errors"], r["tokens"]) for r in loupe.hql(
           "requests | summarize errors = countif(status >= 400), tokens = sum(total_tokens) by model")}
    want = {m: (e, t) for m, e, t in con.execute(
        "SELECT model, count(*) FILTER (WHERE status >= 400), sum(total_tokens) FROM requests GROUP BY model").fetchall()}
    assert got == want

    # Distinct users per provider: exact (dcount is count(distinct)).
    got = {r["provider"]: r["users"] for r in loupe.hql("requests | summarize users = dcount(user_id) by provider")}
    want = dict(con.execute("SELECT provider, count(DISTINCT user_id) FROM requests GROUP BY provider").fetchall())
    assert got == want

    # p95 latency per model: approximate; its rank must be within 1% (of the group size) of 0.95.
    got = {r["model"]: r["p95"] for r in loupe.hql("requests | summarize p95 = p95(latency_ms), n = count() by model")}
    for model, p95 in got.items():
        n, below, at_or_below = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE latency_ms < ?), count(*) FILTER (WHERE latency_ms <= ?) "
            "FROM requests WHERE model = ?", [p95, p95, model]).fetchone()
        if n < 200:
            continue  # small groups: the estimate is only bounded by neighbouring values
        assert below / n <= 0.96 and at_or_below / n >= 0.94, (model, p95, below / n, at_or_below / n)
