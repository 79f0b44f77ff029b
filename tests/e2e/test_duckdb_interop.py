"""Interop: DuckDB reads the Delta table's Parquet files that Loupe wrote and gets the same
counts and sums as the records that were sent."""
import collections
import decimal
import glob
import json
import os
import subprocess

import duckdb

from conftest import LOUPE_GEN_BIN


def active_files(table_dir):
    """Active data files of a Delta table, replayed from its JSON commit log (no checkpoint yet)."""
    files = set()
    for log in sorted(glob.glob(os.path.join(table_dir, "_delta_log", "*.json"))):
        with open(log) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    files.add(action["add"]["path"])
                elif "remove" in action:
                    files.discard(action["remove"]["path"])
    return [os.path.join(table_dir, p) for p in sorted(files)]


def test_duckdb_reads_what_loupe_wrote(loupe_factory, tmp_path):
    ndjson = tmp_path / "records.ndjson"
    subprocess.run([LOUPE_GEN_BIN, "--count", "20000", "--seed", "7", "--days", "3", "--out", str(ndjson)],
                   check=True, timeout=300)
    lines = ndjson.read_bytes().splitlines()
    sent = [json.loads(l) for l in lines]

    loupe = loupe_factory(env={"LOUPE__STORAGE__FLUSH_INTERVAL_MS": "500"})
    accepted = 0
    for i in range(0, len(lines), 2000):
        status, body = loupe.post("/v1/ingest", b"\n".join(lines[i:i + 2000]))
        assert status == 200, body
        accepted += body["accepted"]
    assert accepted == len(sent)
    loupe.stop()

    table_dir = os.path.join(loupe.data_dir, "tables", "requests")
    files = active_files(table_dir)
    assert files and all("/day=" in f for f in files), files
    con = duckdb.connect()
    con.execute("SET threads = 2")
    rel = f"read_parquet({files!r}, hive_partitioning = true)"

    n, prompt, completion, cost, priced, days = con.execute(
        f"SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd), "
        f"count(*) FILTER (WHERE price_known), count(DISTINCT day) FROM {rel}").fetchone()
    assert n == len(sent)
    assert prompt == sum(r.get("prompt_tokens", 0) for r in sent)
    assert completion == sum(r.get("completion_tokens", 0) for r in sent)
    expected_cost = sum(decimal.Decimal(r["cost_usd"]) for r in sent if r.get("cost_usd") is not None)
    assert decimal.Decimal(cost) == expected_cost, (cost, expected_cost)
    assert priced == sum(1 for r in sent if r.get("cost_usd") is not None)
    assert days >= 3

    by_model = dict(con.execute(f"SELECT model, count(*) FROM {rel} GROUP BY model").fetchall())
    assert by_model == dict(collections.Counter(r["model"] for r in sent))

    envs = dict(con.execute(
        f"SELECT properties['environment'], count(*) FROM {rel} GROUP BY 1").fetchall())
    expected_envs = collections.Counter(r.get("properties", {}).get("environment") for r in sent)
    assert envs == dict(expected_envs)

    ids = con.execute(f"SELECT count(DISTINCT request_id) FROM {rel}").fetchone()[0]
    assert ids == len(sent)
    # Rows are sorted by (org_id, created_at) inside each file so time filters prune row groups.
    for f in files[:3]:
        ts = [r[0] for r in con.execute(f"SELECT epoch_us(created_at) FROM read_parquet('{f}')").fetchall()]
        assert ts == sorted(ts)
