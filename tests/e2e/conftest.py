"""Shared fixtures: start the real `loupe` binary on 127.0.0.1 and stop it afterwards."""
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

LOUPE_BIN = os.environ.get("LOUPE_BIN", "target/debug/loupe")
LOUPE_GEN_BIN = os.environ.get("LOUPE_GEN_BIN", "target/debug/loupe-gen")
PROVIDER_FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "providers")


def provider_fixture(name):
    """A recorded provider reply from testdata/providers (bytes)."""
    with open(os.path.join(PROVIDER_FIXTURES, name), "rb") as f:
        return f.read()


class Loupe:
    def __init__(self, data_dir, env=None):
        self.data_dir = str(data_dir)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [LOUPE_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=full_env, text=True,
        )
        lines = queue.Queue()
        threading.Thread(target=self._drain, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + 60
        self.base = None
        self.lines_seen = []  # stderr up to the address line (e.g. the OTLP/gRPC address)
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"loupe exited with {self.proc.returncode}")
                continue
            self.lines_seen.append(line)
            m = re.search(r"loupe listening on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.base = m.group(1)
                break
        if self.base is None:
            self.kill()
            raise RuntimeError("loupe did not start within 60 s")

    def _drain(self, lines):
        for line in self.proc.stderr:
            lines.put(line)

    def post(self, path, body: bytes, content_type="application/x-ndjson", headers=None):
        req = urllib.request.Request(self.base + path, data=body, method="POST")
        req.add_header("content-type", content_type)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())

    def hql(self, query, key=None):
        """The rows of an HQL query (as dicts), asserting a 200 answer."""
        headers = {"authorization": f"Bearer {key}"} if key else None
        status, body = self.post("/v1/hql", json.dumps({"query": query}).encode(), "application/json", headers)
        assert status == 200, body
        return [dict(zip([c["name"] for c in body["columns"]], row)) for row in body["rows"]]

    def wait_rows(self, n, deadline_s=20):
        """Gateway records reach storage off the hot path: wait (bounded) until n rows are there."""
        end = time.monotonic() + deadline_s
        got = 0
        while time.monotonic() < end:
            got = self.hql("requests | count")[0]["count"]
            if got >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"only {got} of {n} records arrived")

    def stop(self):
        """Graceful stop: SIGTERM makes Loupe flush every acknowledged record to Parquet."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
                raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def loupe_factory(tmp_path):
    started = []

    def start(env=None, data_dir=None):
        s = Loupe(data_dir or tmp_path / "data", env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()
