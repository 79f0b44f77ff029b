//! `loupe-gen`: writes synthetic LLM request logs as NDJSON in Loupe's native ingest format.
//!
//! ```text
//! loupe-gen --count 100000 --seed 7 --days 7 --start 2025-01-01T00:00:00Z --orgs acme,globex --out logs.ndjson
//! loupe-gen --count 1000000 --days 30 --batch-size 10000 --out data/logs.ndjson   # data/logs-00001.ndjson, ...
//! loupe-gen --count 10 | curl --data-binary @- -H 'Content-Type: application/x-ndjson' ... /v1/ingest
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, Utc};
use clap::Parser;
use loupe_model::PriceTable;
use loupe_testkit::{GenOptions, Generator, write_ndjson};

/// Upper bound on `--count`.
const MAX_COUNT: u64 = 100_000_000;
/// Upper bound on `--days` (ten years).
const MAX_DAYS: f64 = 3650.0;

/// Generate synthetic LLM request logs (NDJSON, Loupe native ingest format: POST /v1/ingest).
///
/// The same seed and options give the same records. Without --start, the span ends at the
/// current minute, so pass --start for reproducible output.
#[derive(Debug, Parser)]
#[command(name = "loupe-gen", version)]
struct Args {
    /// Number of records (at most 100000000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=MAX_COUNT))]
    count: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Records are spread over this many days (fractions allowed, at most 3650).
    #[arg(long, default_value_t = 7.0, value_parser = parse_days)]
    days: f64,
    /// Start of the span (RFC 3339). Default: now (to the minute) minus --days.
    #[arg(long, value_parser = parse_start)]
    start: Option<DateTime<Utc>>,
    /// Comma-separated organisation ids; the first is the busiest.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    orgs: Vec<String>,
    /// Number of distinct user ids (user_0 is the most active); 0 for none.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Include provider-shaped request and response bodies.
    #[arg(long)]
    bodies: bool,
    /// Output file, or - for stdout.
    #[arg(long, default_value = "-")]
    out: String,
    /// Split the output into files of this many records: OUT-00001.ndjson, OUT-00002.ndjson, ...
    /// (needs --out FILE).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: Option<u64>,
}

fn parse_days(s: &str) -> Result<f64, String> {
    let d: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of days, found {s:?}"))?;
    if !(d > 0.0 && d <= MAX_DAYS) {
        return Err(format!("must be > 0 and at most {MAX_DAYS}"));
    }
    Ok(d)
}

fn parse_start(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-01-01T00:00:00Z ({e})"))
}

/// `dir/name.ext` -> `dir/name-00001.ext` (`.ndjson` when there is no extension).
fn batch_path(out: &Path, n: u64) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ndjson".to_owned());
    out.with_file_name(format!("{stem}-{n:05}.{ext}"))
}

enum Error {
    Usage(String),
    Io(String, io::Error),
}

fn run(args: Args) -> Result<(u64, String), Error> {
    let span = Duration::microseconds((args.days * 86_400_000_000.0).round() as i64);
    let start = match args.start {
        Some(s) => s,
        None => {
            let now = Utc::now();
            now.duration_trunc(Duration::minutes(1)).unwrap_or(now) - span
        }
    };
    let orgs: Vec<String> = args
        .orgs
        .iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if orgs.is_empty() {
        return Err(Error::Usage(
            "--orgs needs at least one non-empty organisation id".to_owned(),
        ));
    }
    let prices = Arc::new(
        PriceTable::bundled().map_err(|e| Error::Usage(format!("bundled price table: {e}")))?,
    );
    let opts = GenOptions {
        seed: args.seed,
        start,
        span,
        count: args.count,
        orgs,
        users: args.users,
        with_bodies: args.bodies,
    };
    let mut generator = Generator::new(opts, prices);
    let io_err = |what: &str, e: io::Error| Error::Io(what.to_owned(), e);

    match (args.batch_size, args.out.as_str()) {
        (Some(_), "-") => Err(Error::Usage(
            "--batch-size needs --out FILE (files are named FILE-00001.ndjson, ...)".to_owned(),
        )),
        (None, "-") => {
            let n = write_ndjson(&mut generator, io::stdout().lock())
                .map_err(|e| io_err("stdout", e))?;
            Ok((n, "stdout".to_owned()))
        }
        (None, path) => {
            let file = File::create(path).map_err(|e| io_err(path, e))?;
            let n = write_ndjson(&mut generator, file).map_err(|e| io_err(path, e))?;
            Ok((n, path.to_owned()))
        }
        (Some(batch), path) => {
            let out = Path::new(path);
            let mut total = 0;
            let mut files = 0u64;
            while generator.len() > 0 {
                files += 1;
                let p = batch_path(out, files);
                let shown = p.display().to_string();
                let file = File::create(&p).map_err(|e| io_err(&shown, e))?;
                let take = usize::try_from(batch).unwrap_or(usize::MAX);
                total += write_ndjson(generator.by_ref().take(take), file)
                    .map_err(|e| io_err(&shown, e))?;
            }
            Ok((
                total,
                format!("{files} files {}", batch_path(out, 1).display()),
            ))
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    match run(args) {
        Ok((n, dest)) => {
            let secs = started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
            let _ = writeln!(
                io::stderr(),
                "loupe-gen: wrote {n} records to {dest} in {secs:.1}s ({rate:.0} records/s)"
            );
            ExitCode::SUCCESS
        }
        // `loupe-gen | head`: the reader went away; not an error.
        Err(Error::Io(_, e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Error::Io(what, e)) => {
            let _ = writeln!(io::stderr(), "loupe-gen: {what}: {e}");
            ExitCode::FAILURE
        }
        Err(Error::Usage(e)) => {
            let _ = writeln!(io::stderr(), "loupe-gen: {e}");
            ExitCode::from(2)
        }
    }
}
