//! Write-ahead log: length-prefixed, checksummed frames in numbered segment files, written by one
//! thread with group commit (every waiting append shares one `fdatasync`).
//!
//! Frame layout (little endian): `magic u32 | len u32 | crc32 u32 | seq u64 | payload[len]`, where
//! the CRC covers `seq` and the payload. The payload is one Arrow IPC stream holding one record
//! batch. A segment is named after the first sequence number it may hold (`{seq:020}.wal`).
//!
//! Appends are acknowledged only after their frame is on disk (fsync mode) or handed to the OS
//! (buffered mode); before acknowledging, the writer hands each batch to the `on_durable`
//! callback, so whoever reads the memtable sees every acknowledged record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::StorageError;

const MAGIC: u32 = 0x4c57_414c; // "LWAL"
const HEADER: usize = 20;
/// A single frame may not exceed this (guards recovery against a corrupt length).
pub const MAX_FRAME: usize = 1 << 30;
/// How many appends one group commit takes at most.
const MAX_GROUP: usize = 1024;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// After `fdatasync` (group commit): survives power loss. The default.
    #[default]
    Fsync,
    /// After `write(2)`: survives a process crash, not a power loss; synced every
    /// `buffered_sync_interval_ms` in the background.
    Buffered,
}

/// Encodes one batch as an Arrow IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    {
        let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(buf)
}

/// Decodes a payload written by [`encode_batch`].
pub fn decode_batch(
    payload: &[u8],
    schema: &arrow::datatypes::SchemaRef,
) -> Result<Vec<RecordBatch>, StorageError> {
    let reader = StreamReader::try_new(io::Cursor::new(payload), None)?;
    let mut out = Vec::new();
    for b in reader {
        // Segments written before a column was added come back in the current schema.
        out.push(loupe_model::schema::upgrade_batch_to(b?, schema)?);
    }
    Ok(out)
}

fn frame_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Lists `(first_seq, path)` of every segment, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            segs.push((seq, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

/// One frame read back during recovery.
#[derive(Debug)]
pub struct RecoveredFrame {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Reads every valid frame of a segment. A torn or corrupt tail (a crash mid-write: those frames
/// were never acknowledged) ends the segment; with `truncate` the file is cut back to the last
/// good frame so new frames are never appended behind garbage.
pub fn read_segment(path: &Path, truncate: bool) -> io::Result<(Vec<RecoveredFrame>, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let mut frames = Vec::new();
    let mut good: u64 = 0;
    loop {
        let mut header = [0u8; HEADER];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (magic, plen, crc) = (word(0), word(4) as usize, word(8));
        let mut seqb = [0u8; 8];
        seqb.copy_from_slice(&header[12..20]);
        let seq = u64::from_le_bytes(seqb);
        if magic != MAGIC || plen > MAX_FRAME || good + (HEADER + plen) as u64 > len {
            break;
        }
        let mut payload = vec![0u8; plen];
        if r.read_exact(&mut payload).is_err() || frame_crc(seq, &payload) != crc {
            break;
        }
        good += (HEADER + plen) as u64;
        frames.push(RecoveredFrame { seq, payload });
    }
    if truncate && good < len {
        tracing::warn!(path = %path.display(), good, len, "truncating torn WAL tail (never acknowledged)");
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good)?;
        f.sync_all()?;
    }
    Ok((frames, good))
}

/// Called by the writer thread, in sequence order, for each durable batch before it is acked.
pub type OnDurable = Box<dyn Fn(u64, Vec<RecordBatch>) + Send + 'static>;

type Reply = oneshot::Sender<Result<u64, String>>;

enum Cmd {
    Append {
        payload: Vec<u8>,
        batch: RecordBatch,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Closes the current segment; replies with the last sequence number written so far.
    Rotate {
        reply: oneshot::Sender<Result<u64, String>>,
    },
}

/// Handle to the WAL writer thread.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Cmd>,
    dir: PathBuf,
    bytes: Arc<AtomicU64>,
}

/// Settings of the WAL writer.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub sync: SyncMode,
    pub segment_bytes: u64,
    pub buffered_sync_interval: Duration,
}

impl Wal {
    /// Starts the writer thread. `next_seq` is the first sequence number to assign;
    /// `existing_bytes` the size of the segments kept from before (for the disk budget).
    pub fn start(
        dir: PathBuf,
        next_seq: u64,
        existing_bytes: u64,
        opts: WalOptions,
        on_durable: OnDurable,
    ) -> Result<Wal, StorageError> {
        fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::channel::<Cmd>(MAX_GROUP * 4);
        let bytes = Arc::new(AtomicU64::new(existing_bytes));
        let mut writer = Writer::open(dir.clone(), next_seq, opts, bytes.clone())?;
        std::thread::Builder::new()
            .name("loupe-wal".into())
            .spawn(move || writer.run(rx, on_durable))
            .map_err(StorageError::Io)?;
        Ok(Wal { tx, dir, bytes })
    }

    /// Appends one batch; resolves with its sequence number once durable.
    pub async fn append(&self, payload: Vec<u8>, batch: RecordBatch) -> Result<u64, StorageError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append {
                payload,
                batch,
                reply,
            })
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await
            .map_err(|_| StorageError::Closed)?
            .map_err(StorageError::Wal)
    }

    /// Starts a new segment; returns the last sequence number held by the closed ones.
    pub async fn rotate(&self) -> Result<u64, StorageError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Rotate { reply })
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await
            .map_err(|_| StorageError::Closed)?
            .map_err(StorageError::Wal)
    }

    /// Deletes closed segments whose every frame has `seq <= upto` (they are in the table).
    pub fn truncate_through(&self, upto: u64) -> Result<(), StorageError> {
        let segs = list_segments(&self.dir)?;
        // A segment holds seqs [first, next.first); only delete when the next one starts <= upto+1.
        for w in segs.windows(2) {
            let ((_, path), (next_first, _)) = (&w[0], &w[1]);
            if *next_first <= upto + 1 {
                let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(path)?;
                self.bytes.fetch_sub(
                    len.min(self.bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
        }
        Ok(())
    }

    /// Bytes currently held in WAL segments on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    file_len: u64,
    next_seq: u64,
    opts: WalOptions,
    bytes: Arc<AtomicU64>,
    dirty_since: Option<Instant>,
}

impl Writer {
    fn open(
        dir: PathBuf,
        next_seq: u64,
        opts: WalOptions,
        bytes: Arc<AtomicU64>,
    ) -> io::Result<Writer> {
        let file = Self::create_segment(&dir, next_seq)?;
        Ok(Writer {
            dir,
            file,
            file_len: 0,
            next_seq,
            opts,
            bytes,
            dirty_since: None,
        })
    }

    fn create_segment(dir: &Path, first_seq: u64) -> io::Result<File> {
        let path = segment_path(dir, first_seq);
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        f.seek(SeekFrom::End(0))?;
        // Make the new directory entry durable.
        File::open(dir)?.sync_all()?;
        Ok(f)
    }

    fn rotate(&mut self) -> io::Result<u64> {
        let last = self.next_seq.saturating_sub(1);
        if self.file_len > 0 {
            self.file.sync_data()?;
            self.file = Self::create_segment(&self.dir, self.next_seq)?;
            self.file_len = 0;
            self.dirty_since = None;
        }
        Ok(last)
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Cmd>, on_durable: OnDurable) {
        let mut group: Vec<(u64, RecordBatch, Reply)> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let first = if self.opts.sync == SyncMode::Buffered && self.dirty_since.is_some() {
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Idle with unsynced data: sync now rather than waiting.
                        let _ = self.file.sync_data();
                        self.dirty_since = None;
                        rx.blocking_recv()
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            } else {
                rx.blocking_recv()
            };
            let Some(first) = first else {
                let _ = self.file.sync_data();
                return;
            };
            let mut rotate_replies = Vec::new();
            let mut cmd = Some(first);
            while let Some(c) = cmd.take() {
                match c {
                    Cmd::Append {
                        payload,
                        batch,
                        reply,
                    } => {
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        buf.extend_from_slice(&MAGIC.to_le_bytes());
                        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                        buf.extend_from_slice(&frame_crc(seq, &payload).to_le_bytes());
                        buf.extend_from_slice(&seq.to_le_bytes());
                        buf.extend_from_slice(&payload);
                        group.push((seq, batch, reply));
                    }
                    Cmd::Rotate { reply } => rotate_replies.push(reply),
                }
                if !rotate_replies.is_empty() || group.len() >= MAX_GROUP || buf.len() > 64 << 20 {
                    break;
                }
                cmd = rx.try_recv().ok();
            }
            let result = self.commit(&buf);
            buf.clear();
            match result {
                Ok(()) => {
                    for (seq, batch, reply) in group.drain(..) {
                        on_durable(seq, vec![batch]);
                        let _ = reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "WAL write failed; appends rejected");
                    for (_, _, reply) in group.drain(..) {
                        let _ = reply.send(Err(format!("write-ahead log write failed: {e}")));
                    }
                    // Start a fresh segment so a partial write never sits before later frames.
                    let _ = self.rotate();
                }
            }
            for reply in rotate_replies {
                let _ = reply.send(self.rotate().map_err(|e| e.to_string()));
            }
        }
    }

    fn commit(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf)?;
        self.file_len += buf.len() as u64;
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        match self.opts.sync {
            SyncMode::Fsync => self.file.sync_data()?,
            SyncMode::Buffered => {
                let since = *self.dirty_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.opts.buffered_sync_interval {
                    self.file.sync_data()?;
                    self.dirty_since = None;
                }
            }
        }
        if self.file_len >= self.opts.segment_bytes {
            self.rotate()?;
        }
        Ok(())
    }
}
