//! A small durable journal of JSON entries: one JSON document per line in one file, appended
//! with `fsync` before the caller acknowledges anything, read back whole on start, and rewritten
//! (temp file, `fsync`, rename) when most of it is dead. For state that is small and short-lived
//! but must survive a crash: the OTLP receiver keeps event logs that wait for their span here.
//!
//! A torn last line (a crash in the middle of an append) is ignored on reading; an append that
//! returned `Ok` is never lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::StorageError;

/// An open journal. Not synchronised: callers serialise access (one writer).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Lines written since the last rewrite.
    lines: usize,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns it with the entries it holds.
    pub fn open(path: impl Into<PathBuf>) -> Result<(Journal, Vec<Value>), StorageError> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (entries, good) = read_entries(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // Cut a torn tail off, so the next append starts on a line of its own.
        if file.metadata()?.len() > good {
            file.set_len(good)?;
            file.sync_data()?;
        }
        let lines = entries.len();
        Ok((Journal { path, file, lines }, entries))
    }

    /// Appends entries; with `sync`, they are on disk when this returns.
    pub fn append(&mut self, entries: &[Value], sync: bool) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.len() * 256);
        for e in entries {
            serde_json::to_writer(&mut buf, e)
                .map_err(|e| StorageError::Wal(format!("journal entry: {e}")))?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        if sync {
            self.file.sync_data()?;
        }
        self.lines += entries.len();
        Ok(())
    }

    /// Lines appended since the journal was opened or last rewritten.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Replaces the whole journal with `entries`, atomically (a crash leaves the old or the new
    /// file, never a mix).
    pub fn rewrite(&mut self, entries: &[Value]) -> Result<(), StorageError> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::with_capacity(entries.len() * 256);
            for e in entries {
                serde_json::to_writer(&mut buf, e)
                    .map_err(|e| StorageError::Wal(format!("journal entry: {e}")))?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = entries.len();
        Ok(())
    }
}

/// The entries of the journal and the length of its complete lines.
fn read_entries(path: &Path) -> Result<(Vec<Value>, u64), StorageError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e.into()),
    };
    let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for line in bytes[..good].split(|b| *b == b'\n') {
        // A garbled line carries nothing that was acknowledged (appends are whole lines).
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            out.push(v);
        }
    }
    Ok((out, good as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_survive_reopen_torn_tails_and_rewrites() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j/join.jsonl");
        let (mut j, old) = Journal::open(&path).expect("open");
        assert!(old.is_empty());
        j.append(&[json!({"a": 1}), json!({"a": 2})], true)
            .expect("append");
        j.append(&[], true).expect("nothing");
        drop(j);
        // A crash in the middle of a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"a\": 3"))
            .expect("torn");
        let (mut j, got) = Journal::open(&path).expect("reopen");
        assert_eq!(got, vec![json!({"a": 1}), json!({"a": 2})]);
        assert_eq!(j.lines(), 2);
        j.rewrite(&[json!({"b": 1})]).expect("rewrite");
        j.append(&[json!({"b": 2})], false).expect("append");
        drop(j);
        let (mut j, got) = Journal::open(&path).expect("reopen");
        assert_eq!(got, vec![json!({"b": 1}), json!({"b": 2})]);
        // An append after a torn tail is not glued to it.
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"c\""))
            .expect("torn");
        let (mut j2, _) = Journal::open(&path).expect("reopen");
        j2.append(&[json!({"c": 1})], true).expect("append");
        drop(j2);
        j = Journal::open(&path).expect("reopen").0;
        assert_eq!(j.lines(), 3);
    }
}
