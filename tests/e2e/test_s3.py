"""Tables on S3-compatible storage, against an S3 emulator (moto, from PyPI) on 127.0.0.1 that the
test starts itself, behind a TCP proxy the test can cut to simulate an outage."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import duckdb
import pytest

from conftest import LOUPE_GEN_BIN
from test_duckdb_interop import active_files


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP proxy on 127.0.0.1 that can refuse traffic (`up = False`) to simulate an outage."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.up = True
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data or not self.up:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.sock.close()


@pytest.fixture
def s3():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="loupe")
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)
    proxy = Proxy(port)
    yield client, proxy
    proxy.close()
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def metrics(loupe):
    with urllib.request.urlopen(loupe.base + "/metrics", timeout=10) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.split()
                out[k] = float(v)
        return out


def count_in_bucket(client, tmp_path):
    local = tmp_path / "bucket"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="loupe", Prefix="tables/requests/"):
        for obj in page.get("Contents", []):
            dest = local / obj["Key"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file("loupe", obj["Key"], str(dest))
    files = active_files(str(local / "tables" / "requests"))
    if not files:
        return 0, 0
    con = duckdb.connect()
    return con.execute(f"SELECT count(*), count(DISTINCT request_id) FROM read_parquet({files!r}, hive_partitioning = true)").fetchone()


def test_s3_tables_survive_restarts_and_outages(s3, loupe_factory, tmp_path):
    client, proxy = s3
    ndjson = tmp_path / "r.ndjson"
    subprocess.run([LOUPE_GEN_BIN, "--count", "6000", "--seed", "11", "--days", "1", "--out", str(ndjson)], check=True, timeout=300)
    lines = ndjson.read_bytes().splitlines()
    env = {
        "LOUPE__STORAGE__TABLE_URL": "s3://loupe/tables",
        "LOUPE__STORAGE__S3__ENDPOINT": f"http://127.0.0.1:{proxy.port}",
        "LOUPE__STORAGE__S3__ALLOW_HTTP": "true",
        "LOUPE__STORAGE__S3__REGION": "us-east-1",
        "LOUPE__STORAGE__S3__ACCESS_KEY_ID": "test",
        "LOUPE__STORAGE__S3__SECRET_ACCESS_KEY": "test",
        "LOUPE__STORAGE__FLUSH_INTERVAL_MS": "300",
    }
    data_dir = tmp_path / "data"
    loupe = loupe_factory(env=env, data_dir=data_dir)
    status, body = loupe.post("/v1/ingest", b"\n".join(lines[:2000]))
    assert (status, body["accepted"]) == (200, 2000)
    loupe.stop()
    assert count_in_bucket(client, tmp_path / "a") == (2000, 2000)

    # Restart on the same bucket; then the object store goes away while ingest continues.
    loupe = loupe_factory(env=env, data_dir=data_dir)
    proxy.up = False
    status, body = loupe.post("/v1/ingest", b"\n".join(lines[2000:4000]))
    assert (status, body["accepted"]) == (200, 2000), "ingest must keep acking into the WAL"
    deadline = time.monotonic() + 30
    while metrics(loupe)["loupe_flush_errors_total"] < 1:
        assert time.monotonic() < deadline, "flushes did not fail while S3 was down"
        time.sleep(0.2)
    assert metrics(loupe)["loupe_pending_records"] == 2000
    # Back up: flushing resumes by itself (retry backoff is at most 30 s).
    proxy.up = True
    deadline = time.monotonic() + 60
    while metrics(loupe)["loupe_pending_records"] > 0:
        assert time.monotonic() < deadline, "flushing did not resume after S3 came back"
        time.sleep(0.3)
    status, body = loupe.post("/v1/ingest", b"\n".join(lines[4000:6000]))
    assert body["accepted"] == 2000
    # Resending an acknowledged batch stores nothing twice.
    status, body = loupe.post("/v1/ingest", b"\n".join(lines[:2000]))
    assert (body["accepted"], body["duplicates"]) == (0, 2000)
    loupe.stop()
    assert count_in_bucket(client, tmp_path / "b") == (6000, 6000)
