//! The crash test: ingest under concurrent load, SIGKILL the server at random moments several
//! times, restart it, and prove that every acknowledged `request_id` is stored exactly once.
//!
//! Requests that fail without an answer (the kill cut them off) may or may not have been stored;
//! their batches are sent again in the next round, so deduplication across crashes is exercised
//! too: those ids must also end up stored exactly once.
//!
//! Set `LOUPE_CRASH_SEED` to replay a run (the seed is printed).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Loupe, stored_id_counts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const ROUNDS: usize = 5;
const CLIENTS: usize = 8;
const MAX_BATCH: usize = 50;

/// One NDJSON batch and the ids it carries.
#[derive(Clone)]
struct Batch {
    ids: Vec<String>,
    body: String,
    /// How many times this batch was sent without a clean answer.
    attempts: usize,
}

fn fresh_batch(rng: &mut StdRng, round: usize) -> Batch {
    let n = rng.random_range(1..=MAX_BATCH);
    let now = chrono::Utc::now().to_rfc3339();
    let mut ids = Vec::with_capacity(n);
    let mut body = String::new();
    for _ in 0..n {
        let id = uuid::Builder::from_random_bytes(rng.random())
            .into_uuid()
            .to_string();
        let rec = json!({
            "request_id": id,
            "created_at": now,
            "latency_ms": rng.random_range(0..5000),
            "model": "gpt-4o-mini",
            "prompt_tokens": rng.random_range(0..2000),
            "completion_tokens": rng.random_range(0..500),
            "user_id": format!("u{}", rng.random_range(0..100)),
            "properties": {"round": round.to_string()},
        });
        body.push_str(&rec.to_string());
        body.push('\n');
        ids.push(id);
    }
    Batch {
        ids,
        body,
        attempts: 0,
    }
}

#[derive(Default)]
struct Ledger {
    /// Every id ever sent.
    sent: HashSet<String>,
    /// Ids answered 200 (and how often they were acked: resends may ack twice).
    acked: HashSet<String>,
    /// Batches sent without a clean answer, to send again next round.
    unknown: Vec<Batch>,
    /// Counters for the report.
    ok_requests: usize,
    failed_requests: usize,
    resent_batches: usize,
    resent_ok: usize,
    resent_records_accepted: usize,
    resent_records_duplicate: usize,
}

enum Outcome {
    Acked { accepted: usize, duplicates: usize },
    Unknown(String),
}

async fn send(c: &reqwest::Client, url: &str, b: &Batch) -> Outcome {
    let resp = match c
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(b.body.clone())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Unknown(format!("send: {e}")),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Unknown(format!("{status}, body: {e}")),
    };
    if status.is_server_error() {
        // 503 (e.g. shutting down) and 5xx: resend later, as the docs say.
        return Outcome::Unknown(format!("{status}: {text}"));
    }
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "unexpected answer to a valid batch: {text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("200 answer is JSON");
    let accepted = v["accepted"].as_u64().expect("accepted") as usize;
    let duplicates = v["duplicates"].as_u64().expect("duplicates") as usize;
    assert_eq!(
        accepted + duplicates,
        b.ids.len(),
        "answer does not add up: {v}"
    );
    Outcome::Acked {
        accepted,
        duplicates,
    }
}

fn record(ledger: &Mutex<Ledger>, mut b: Batch, resend: bool, out: Outcome) {
    let mut l = ledger.lock().expect("ledger");
    match out {
        Outcome::Acked {
            accepted,
            duplicates,
        } => {
            l.ok_requests += 1;
            if resend {
                l.resent_ok += 1;
                l.resent_records_accepted += accepted;
                l.resent_records_duplicate += duplicates;
            } else {
                // A batch sent for the first time holds only fresh ids.
                assert_eq!(duplicates, 0, "fresh ids reported as duplicates");
            }
            l.acked.extend(b.ids);
        }
        Outcome::Unknown(_) => {
            l.failed_requests += 1;
            b.attempts += 1;
            l.unknown.push(b);
        }
    }
}

/// One client: resends queued batches first, then sends fresh ones, until told to stop.
async fn client_loop(
    url: String,
    ledger: Arc<Mutex<Ledger>>,
    resend_queue: Arc<Mutex<Vec<Batch>>>,
    stop: Arc<AtomicBool>,
    mut rng: StdRng,
    round: usize,
) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    while !stop.load(Ordering::SeqCst) {
        let queued = resend_queue.lock().expect("queue").pop();
        let (batch, resend) = match queued {
            Some(b) => (b, true),
            None => {
                let b = fresh_batch(&mut rng, round);
                ledger
                    .lock()
                    .expect("ledger")
                    .sent
                    .extend(b.ids.iter().cloned());
                (b, false)
            }
        };
        if resend {
            ledger.lock().expect("ledger").resent_batches += 1;
        }
        let out = send(&c, &url, &batch).await;
        let failed = matches!(out, Outcome::Unknown(_));
        record(&ledger, batch, resend, out);
        if failed {
            // The server is gone (or going): this client's round is over.
            break;
        }
    }
}

/// (commits, OPTIMIZE commits) in a Delta log directory: shows that flushes and compactions ran
/// while the server was being killed.
fn delta_log_stats(log_dir: &std::path::Path) -> (usize, usize) {
    let mut commits = 0;
    let mut optimizes = 0;
    for e in std::fs::read_dir(log_dir).expect("delta log").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            commits += 1;
            let text = std::fs::read_to_string(&p).expect("commit");
            if text.contains("\"operation\":\"OPTIMIZE\"") {
                optimizes += 1;
            }
        }
    }
    (commits, optimizes)
}

fn seed() -> u64 {
    match std::env::var("LOUPE_CRASH_SEED") {
        Ok(s) => s.parse().expect("LOUPE_CRASH_SEED must be a u64"),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock");
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_sigkill_exactly_once() {
    let started = Instant::now();
    let seed = seed();
    println!("crash test seed: {seed} (replay with LOUPE_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tmp");
    let envs = [
        ("LOUPE__STORAGE__FLUSH_INTERVAL_MS", "200"),
        ("LOUPE__STORAGE__COMPACT_INTERVAL_SECS", "1"),
        ("LOUPE_LOG", "warn"),
    ];
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut per_round = Vec::new();

    for round in 0..ROUNDS {
        let srv = Loupe::start(dir.path(), &[], &envs);
        let url = srv.url("/v1/ingest");
        let resend_queue = {
            let mut l = ledger.lock().expect("ledger");
            Arc::new(Mutex::new(std::mem::take(&mut l.unknown)))
        };
        let queued = resend_queue.lock().expect("queue").len();
        let acked_before = ledger.lock().expect("ledger").acked.len();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                tokio::spawn(client_loop(
                    url.clone(),
                    ledger.clone(),
                    resend_queue.clone(),
                    stop.clone(),
                    StdRng::seed_from_u64(rng.random::<u64>() ^ i as u64),
                    round,
                ))
            })
            .collect();

        let delay = Duration::from_millis(rng.random_range(100..=1500));
        tokio::time::sleep(delay).await; // the intentional, random kill moment
        srv.sigkill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client did not stop within 30 s after the kill")
                .expect("client task panicked");
        }
        // Batches still queued for resending (the round ended before they were taken) wait for
        // the next round too.
        let left: Vec<Batch> = std::mem::take(&mut *resend_queue.lock().expect("queue"));
        let mut l = ledger.lock().expect("ledger");
        l.unknown.extend(left);
        let acked_now = l.acked.len();
        println!(
            "round {round}: killed after {delay:?}; {queued} batches queued for resend; \
             acked ids {acked_before} -> {acked_now}; {} batches without answer",
            l.unknown.len()
        );
        per_round.push((delay, acked_now - acked_before));
    }

    // Start once more, send every batch that never got a clean answer, and stop gracefully.
    let srv = Loupe::start(dir.path(), &[], &envs);
    let c = common::client();
    let url = srv.url("/v1/ingest");
    let leftovers = std::mem::take(&mut ledger.lock().expect("ledger").unknown);
    let final_resends = leftovers.len();
    for b in leftovers {
        let out = send(&c, &url, &b).await;
        if let Outcome::Unknown(e) = &out {
            panic!("resend to a healthy server failed: {e}");
        }
        ledger.lock().expect("ledger").resent_batches += 1;
        record(&ledger, b, true, out);
    }
    let m = c
        .get(srv.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    srv.sigterm_and_wait();

    let counts = stored_id_counts(dir.path()).await;
    let l = ledger.lock().expect("ledger");
    assert!(l.unknown.is_empty());
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "ids stored more than once: {twice:?}");
    let missing: Vec<_> = l
        .acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged ids missing, e.g. {missing:?}",
        l.acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .count()
    );
    let never_sent: Vec<_> = counts
        .keys()
        .filter(|id| !l.sent.contains(*id))
        .take(10)
        .collect();
    assert!(never_sent.is_empty(), "ids never sent: {never_sent:?}");
    // Every batch was eventually acknowledged, so stored == acked == sent.
    assert_eq!(l.acked.len(), l.sent.len());
    assert_eq!(counts.len(), l.acked.len());
    let flushes: HashMap<&str, u64> = ["loupe_flushes_total", "loupe_ingested_records_total"]
        .into_iter()
        .filter_map(|k| common::metric(&m, k).map(|v| (k, v)))
        .collect();

    let (commits, optimizes) = delta_log_stats(&dir.path().join("tables/requests/_delta_log"));

    println!(
        "crash test: seed {seed}, {ROUNDS} rounds (kill delays / ids acked per round: {:?}), \
         {} ok requests, {} requests cut off, {} batches resent ({} in the final start; {} resends \
         acked: {} records newly accepted, {} already stored), {} ids acked, {} ids stored, \
         final start metrics {flushes:?}, {commits} Delta commits ({optimizes} of them \
         compactions), {:.1} s",
        per_round,
        l.ok_requests,
        l.failed_requests,
        l.resent_batches,
        final_resends,
        l.resent_ok,
        l.resent_records_accepted,
        l.resent_records_duplicate,
        l.acked.len(),
        counts.len(),
        started.elapsed().as_secs_f64(),
    );
}
