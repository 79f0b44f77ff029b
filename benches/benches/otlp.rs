//! OTLP/HTTP protobuf ingest vs the native NDJSON path, for the same records: decode + map (or
//! parse + validate) + cost + durable append (WAL group commit + memtable), batches of 100 LLM
//! spans (OpenLLMetry chat spans with messages and usage, from `testdata/otlp`), one task, fsync
//! and buffered WAL. The OTLP path stores what the server stores: the request records and, in
//! parallel, every span's row in the `spans` table (its own WAL). Every iteration rewrites the span ids (and the native request ids) in place
//! so nothing is a duplicate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use loupe_benches::{open_storage, open_table, prices, smoke};
use loupe_ingest::IngestContext;
use loupe_ingest::otlp::{OtlpFormat, decode_traces, map_traces};
use loupe_storage::{SyncMode, TableSpec};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const BATCH: usize = 100;

/// A body and the offsets of the ids rewritten per iteration.
#[derive(Clone)]
struct Template {
    bytes: Vec<u8>,
    slots: Vec<usize>,
}

impl Template {
    /// Protobuf: each slot is an 8-byte span id.
    fn next(&self, counter: &mut u64) -> Vec<u8> {
        let mut b = self.bytes.clone();
        for &s in &self.slots {
            *counter += 1;
            b[s..s + 8].copy_from_slice(&counter.to_be_bytes());
        }
        b
    }
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// A protobuf body of `BATCH` chat spans (span ids replaced per iteration) and the native NDJSON
/// of the very records it maps to (request ids replaced per iteration).
fn templates(ctx: &IngestContext) -> (Template, Template) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/otlp/openllmetry_chat_traces.pb");
    let one = ExportTraceServiceRequest::decode(std::fs::read(p).expect("fixture").as_slice())
        .expect("fixture decodes");
    let mut req = one.clone();
    let span = one.resource_spans[0].scope_spans[0].spans[0].clone();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans.clear();
    for i in 0..BATCH {
        let mut s = span.clone();
        // A marker span id the template rewrites; distinct per span.
        s.span_id = [0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69, 0x00, i as u8].to_vec();
        s.start_time_unix_nano = now - 2_000_000_000;
        s.end_time_unix_nano = now - 1_000_000_000;
        spans.push(s);
    }
    let bytes = req.encode_to_vec();
    let slots: Vec<usize> = (0..BATCH)
        .flat_map(|i| find_all(&bytes, &[0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69, 0x00, i as u8]))
        .collect();
    assert_eq!(slots.len(), BATCH, "one marker per span");
    let pb = Template { bytes, slots };

    // Native: the same records, request ids made rewritable (…-8000-<12 hex>, last 16 hex free).
    let records = map_traces(&req, ctx).expect("maps").records;
    let mut nd = Vec::new();
    let mut nslots = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut v = loupe_testkit::record_to_native_json(r);
        let marker = format!("00000000-0000-4000-{:04x}-000000000000", i);
        v["request_id"] = serde_json::json!(marker);
        let line = serde_json::to_string(&v).expect("json");
        let at = line.find(&marker).expect("marker") + 19;
        nslots.push(nd.len() + at);
        nd.extend_from_slice(line.as_bytes());
        nd.push(b'\n');
    }
    let native = Template {
        bytes: nd,
        slots: nslots,
    };
    (pb, native)
}

/// Native: each slot is the "xxxx-xxxxxxxxxxxx" tail of a request id (16 hex digits around a dash).
fn next_native(t: &Template, counter: &mut u64) -> Vec<u8> {
    let mut b = t.bytes.clone();
    for &s in &t.slots {
        *counter += 1;
        let h = format!("{:016x}", *counter);
        b[s..s + 4].copy_from_slice(&h.as_bytes()[..4]);
        b[s + 5..s + 17].copy_from_slice(&h.as_bytes()[4..]);
    }
    b
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let prices = prices();
    let ctx = IngestContext::new("default", prices.clone());
    let (pb, native) = templates(&ctx);
    let mut group = c.benchmark_group("otlp_vs_native");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(if smoke() { 1 } else { 5 }));
    group.throughput(Throughput::Elements(BATCH as u64));
    for sync in [SyncMode::Fsync, SyncMode::Buffered] {
        let dir = tempfile::tempdir().expect("tmp");
        let storage = rt.block_on(open_storage(dir.path(), sync));
        let spans = rt.block_on(open_table(dir.path(), sync, TableSpec::SPANS));
        let mode = format!("{sync:?}").to_lowercase();
        let mut counter = 1u64 << 40;
        group.bench_function(BenchmarkId::new("otlp_protobuf", &mode), |b| {
            b.iter_custom(|iters| {
                let bodies: Vec<Vec<u8>> = (0..iters).map(|_| pb.next(&mut counter)).collect();
                let (storage, spans, ctx) = (
                    storage.clone(),
                    spans.clone(),
                    IngestContext::new("default", prices.clone()),
                );
                rt.block_on(async move {
                    let start = Instant::now();
                    for body in bodies {
                        let req = decode_traces(&body, OtlpFormat::Protobuf).expect("decode");
                        let out = map_traces(&req, &ctx).expect("map");
                        assert_eq!(out.records.len(), BATCH);
                        let (ack, span_ack) = tokio::join!(
                            storage.append(out.records),
                            spans.append_spans(out.spans)
                        );
                        assert_eq!(ack.expect("append").accepted, BATCH);
                        assert_eq!(span_ack.expect("append spans").accepted, BATCH);
                    }
                    start.elapsed()
                })
            })
        });
        let mut counter = 1u64 << 41;
        group.bench_function(BenchmarkId::new("native_ndjson", &mode), |b| {
            b.iter_custom(|iters| {
                let bodies: Vec<Vec<u8>> = (0..iters)
                    .map(|_| next_native(&native, &mut counter))
                    .collect();
                let (storage, ctx) = (
                    storage.clone(),
                    IngestContext::new("default", prices.clone()),
                );
                rt.block_on(async move {
                    let start = Instant::now();
                    for body in bodies {
                        let records =
                            loupe_ingest::parse_native(&body, Some("application/x-ndjson"), &ctx)
                                .expect("parse");
                        assert_eq!(records.len(), BATCH);
                        let ack = storage.append(records).await.expect("append");
                        assert_eq!(ack.accepted, BATCH);
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(storage.shutdown());
        rt.block_on(spans.shutdown());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
