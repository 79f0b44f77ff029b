//! Harness for black-box tests: runs the real `loupe` binary, finds its port, stops it, and reads
//! what it stored by opening the data directory directly once it has stopped.
//!
//! Every wait here is bounded; a process that does not do what is expected fails the test (with
//! its stderr in the message) instead of hanging it. Every process started is killed on drop.

#![allow(dead_code)] // each test target uses a different part of the harness

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use loupe_query::{QueryEngine, QueryLimits};
use loupe_storage::{Storage, StorageConfig};

/// Startup can be slow on a loaded 2-core machine (debug build, Delta log replay).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown (final flush included) may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command that should fail at once may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn loupe_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loupe")
}

/// A child process with stderr drained by a thread (so it never blocks on a full pipe) and
/// forwarded line by line into a channel; killed on drop if still running.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `loupe <args>` with `envs` set, every inherited `LOUPE_*` variable removed (so the
    /// environment of whoever runs the tests cannot change the configuration), stdout piped.
    pub fn spawn<A: Into<OsString> + Clone>(args: &[A], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(loupe_bin());
        cmd.args(args.iter().cloned().map(Into::into))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LOUPE") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the loupe binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(stderr);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = thread_log.lock() {
                    l.push(line.clone());
                }
                // The receiver may be gone; keep draining regardless.
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            lines: rx,
            log,
            exited: None,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits for a stderr line matching `pred`; `None` on timeout or when stderr closes first.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits (bounded) until stderr is closed and drained, e.g. after the process exited.
    pub fn wait_stderr_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Waits (bounded polling) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.exited = Some(st);
                    return Some(st);
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for loupe: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`Proc::wait_exit`], but fails the test (after killing the process) on timeout.
    pub fn expect_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(st) => st,
            None => {
                self.kill_now();
                panic!(
                    "loupe did not exit within {timeout:?} ({what}); stderr:\n{}",
                    self.stderr_text()
                );
            }
        }
    }

    /// Reads stdout to the end; call only after the process exited.
    pub fn stdout_text(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut s).expect("read stdout");
        }
        s
    }

    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// SIGKILL and reap (bounded).
    pub fn kill_now(&mut self) {
        if self.exited.is_some() {
            return;
        }
        self.signal(libc::SIGKILL);
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            // Nothing more can be done without hanging; the OS reaps it when the test ends.
            eprintln!(
                "warning: loupe pid {} did not die after SIGKILL",
                self.pid()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_now();
    }
}

#[allow(unsafe_code)] // kill(2) has no safe std equivalent for signals other than SIGKILL
fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    // ESRCH (already gone) is fine: the caller waits for the exit anyway.
    let _ = rc;
}

/// A running `loupe serve`.
pub struct Loupe {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Loupe {
    /// Starts `loupe serve --listen 127.0.0.1:0 --data-dir <data_dir> <extra_args>` and waits
    /// (up to [`START_TIMEOUT`]) for the line announcing its address.
    pub fn start(data_dir: &Path, extra_args: &[&str], envs: &[(&str, &str)]) -> Loupe {
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.as_os_str().to_owned(),
        ];
        args.extend(extra_args.iter().map(OsString::from));
        let mut proc = Proc::spawn(&args, envs);
        const PREFIX: &str = "loupe listening on http://";
        let Some(line) = proc.wait_for_line(START_TIMEOUT, |l| l.starts_with(PREFIX)) else {
            let exit = proc.wait_exit(Duration::ZERO);
            proc.kill_now();
            panic!(
                "loupe did not start within {START_TIMEOUT:?} (exit: {exit:?}); stderr:\n{}",
                proc.stderr_text()
            );
        };
        let addr = line[PREFIX.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Loupe {
            proc,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Crash: SIGKILL, reaped before returning.
    pub fn sigkill(mut self) {
        self.proc.kill_now();
    }

    /// Graceful stop: SIGTERM, then wait (bounded) for a successful exit.
    pub fn sigterm_and_wait(mut self) {
        self.proc.signal(libc::SIGTERM);
        let st = self.proc.expect_exit(STOP_TIMEOUT, "after SIGTERM");
        assert!(
            st.success(),
            "loupe exited with {st} after SIGTERM; stderr:\n{}",
            self.proc.stderr_text()
        );
    }
}

/// Runs `loupe <args>` to completion (bounded) and returns (status, stdout, stderr).
pub fn run_loupe(args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn(args, envs);
    let st = p.expect_exit(EXIT_TIMEOUT, &format!("loupe {}", args.join(" ")));
    let out = p.stdout_text();
    p.wait_stderr_closed(Duration::from_secs(5));
    let err = p.stderr_text();
    (st, out, err)
}

/// An HTTP client whose every request is bounded.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// `n` native records with fresh v4 ids and `created_at` now; returns (ids, records).
pub fn native_records(n: usize, model: &str) -> (Vec<uuid::Uuid>, Vec<serde_json::Value>) {
    let now = chrono::Utc::now().to_rfc3339();
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let recs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({
                "request_id": id.to_string(),
                "created_at": now,
                "latency_ms": 100 + i as i64,
                "model": model,
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "properties": {"i": i.to_string()},
            })
        })
        .collect();
    (ids, recs)
}

pub fn ndjson(records: &[serde_json::Value]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&r.to_string());
        s.push('\n');
    }
    s
}

/// Opens the storage of a stopped server the way the server would (WAL replay included), with
/// background work disabled so nothing changes while the test reads.
pub async fn open_storage(data_dir: &Path) -> Storage {
    Storage::open(StorageConfig {
        data_dir: data_dir.to_path_buf(),
        flush_interval_ms: 3_600_000,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    })
    .await
    .expect("open storage")
}

/// Every stored row (table + WAL not yet flushed) of a stopped server, every org, with the
/// columns listed (all when empty).
pub async fn stored_batches(data_dir: &Path, columns: &[&str]) -> Vec<RecordBatch> {
    let storage = open_storage(data_dir).await;
    let engine = QueryEngine::new(storage.clone(), QueryLimits::default());
    let ctx = engine.session().await.expect("query session");
    let mut df = ctx.table("requests").await.expect("requests table");
    if !columns.is_empty() {
        df = df.select_columns(columns).expect("select columns");
    }
    let batches = engine.collect(df).await.expect("collect");
    storage.shutdown().await;
    batches
}

/// `request_id` → how many rows carry it.
pub async fn stored_id_counts(data_dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for b in stored_batches(data_dir, &["request_id"]).await {
        let col = cast(b.column(0), &DataType::Utf8).expect("cast request_id");
        let ids = col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .expect("utf8 ids");
        for i in 0..ids.len() {
            *counts.entry(ids.value(i).to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Every stored row as a JSON object (decimals as exact strings, nulls explicit), keyed by
/// `request_id`.
pub async fn stored_rows(data_dir: &Path) -> HashMap<String, serde_json::Value> {
    let mut out = HashMap::new();
    for b in stored_batches(data_dir, &[]).await {
        let b = decimals_as_strings(&b);
        let mut buf = Vec::new();
        {
            let mut w = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buf);
            w.write(&b).expect("rows to json");
            w.finish().expect("finish json");
        }
        if buf.is_empty() {
            continue;
        }
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&buf).expect("json rows");
        for r in rows {
            let id = r["request_id"].as_str().expect("request_id").to_string();
            assert!(out.insert(id.clone(), r).is_none(), "{id} stored twice");
        }
    }
    out
}

fn decimals_as_strings(b: &RecordBatch) -> RecordBatch {
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if matches!(f.data_type(), DataType::Decimal128(..)) {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(cast(c, &DataType::Utf8).expect("decimal to string"));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch")
}

/// A decimal string without trailing zeros (`"0.000025800"` → `"0.0000258"`).
pub fn trim_decimal(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Parquet files anywhere under `dir`.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

/// The value of a counter or gauge in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
