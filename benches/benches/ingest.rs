//! Durable ingest throughput: NDJSON parse + validation + cost + WAL group commit + memtable,
//! for batch sizes 1, 100, 1000 at concurrency 1 and 16, fsync vs buffered WAL.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use loupe_benches::{Bodies, open_storage, prices, smoke};
use loupe_ingest::IngestContext;
use loupe_storage::SyncMode;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let prices = prices();
    let counter = Arc::new(AtomicU64::new(1));
    let mut group = c.benchmark_group("durable_ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(if smoke() { 1 } else { 4 }));
    for sync in [SyncMode::Fsync, SyncMode::Buffered] {
        let dir = tempfile::tempdir().expect("tmp");
        let storage = rt.block_on(open_storage(dir.path(), sync));
        for batch in [1usize, 100, 1000] {
            for conc in [1usize, 16] {
                group.throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(
                    format!("{sync:?}").to_lowercase(),
                    format!("batch{batch}/c{conc}"),
                );
                let bodies = Bodies::new(batch, prices.clone(), counter.clone());
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let storage = storage.clone();
                        let prices = prices.clone();
                        let bodies = bodies.clone();
                        rt.block_on(async move {
                            let per_task = iters.div_ceil(conc as u64);
                            let mut tasks = Vec::new();
                            let start = Instant::now();
                            for _ in 0..conc {
                                let storage = storage.clone();
                                let ctx = IngestContext::new("default", prices.clone());
                                let mut body_gen = bodies.clone();
                                tasks.push(tokio::spawn(async move {
                                    for _ in 0..per_task {
                                        let body = body_gen.next_body();
                                        let records = loupe_ingest::parse_native(
                                            &body,
                                            Some("application/x-ndjson"),
                                            &ctx,
                                        )
                                        .expect("parse");
                                        storage.append(records).await.expect("append");
                                    }
                                }));
                            }
                            for t in tasks {
                                t.await.expect("task");
                            }
                            // Criterion divides by iters; we ran per_task * conc >= iters appends.
                            start
                                .elapsed()
                                .mul_f64(iters as f64 / (per_task * conc as u64) as f64)
                        })
                    })
                });
            }
        }
        rt.block_on(storage.shutdown());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
