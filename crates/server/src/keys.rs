//! API keys: generated once, shown once, stored as SHA-256 hashes in a JSON file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of every Loupe key, so leaked keys are recognisable by secret scanners.
pub const KEY_PREFIX: &str = "sk-loupe-";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// The first characters of the key, for telling keys apart in listings.
    pub display_prefix: String,
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn read(path: &Path) -> Result<Vec<StoredKey>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<KeyFile>(&bytes)
            .map(|f| f.keys)
            .map_err(|e| format!("key file {} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read key file {}: {e}", path.display())),
    }
}

/// Creates a key for `org`, stores its hash and returns the key (to be printed once).
pub fn create_key(path: &Path, org: &str, name: &str) -> Result<(String, StoredKey), String> {
    if org.is_empty()
        || org.len() > 128
        || !org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "org name '{org}' is not valid: use 1-128 characters from A-Z a-z 0-9 - _ ."
        ));
    }
    let mut keys = read(path)?;
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let key = format!("{KEY_PREFIX}{}", hex::encode(raw));
    let stored = StoredKey {
        id: uuid::Uuid::new_v4().to_string(),
        org_id: org.to_string(),
        name: name.to_string(),
        hash: hash_key(&key),
        display_prefix: key.chars().take(KEY_PREFIX.len() + 4).collect(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    keys.push(stored.clone());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(&KeyFile { keys }).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((key, stored))
}

pub fn list_keys(path: &Path) -> Result<Vec<StoredKey>, String> {
    read(path)
}

/// (mtime, size, inode) of the key file.
type FileVersion = (SystemTime, u64, u64);

/// The server's view of the key file; re-read when the file changes (so `loupe keys create`
/// takes effect without a restart).
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    state: RwLock<(Option<FileVersion>, HashMap<String, String>)>,
}

impl loupe_gateway::KeyResolver for KeyStore {
    fn enabled(&self) -> bool {
        KeyStore::enabled(self)
    }
    fn org_of(&self, key: &str) -> Option<String> {
        KeyStore::org_of(self, key)
    }
}

impl KeyStore {
    pub fn open(path: PathBuf) -> Result<KeyStore, String> {
        let ks = KeyStore {
            path,
            state: RwLock::new((None, HashMap::new())),
        };
        ks.load(ks.version())?;
        Ok(ks)
    }

    /// Identifies the file version by (mtime, size, inode): every write renames a new file into
    /// place, so the inode changes even when two writes share a timestamp. `None`: no file.
    fn version(&self) -> Option<FileVersion> {
        std::fs::metadata(&self.path).ok().and_then(|m| {
            use std::os::unix::fs::MetadataExt;
            m.modified().ok().map(|t| (t, m.len(), m.ino()))
        })
    }

    fn load(&self, version: Option<FileVersion>) -> Result<(), String> {
        let map = read(&self.path)?
            .into_iter()
            .map(|k| (k.hash, k.org_id))
            .collect();
        if let Ok(mut s) = self.state.write() {
            *s = (version, map);
        }
        Ok(())
    }

    /// One `stat` per call; the file is read again only when it changed (or appeared/vanished).
    /// With no keys file (the default on loopback) nothing is opened per request.
    fn reload_if_changed(&self) -> Result<(), String> {
        let version = self.version();
        let current = self.state.read().map(|s| s.0).unwrap_or(None);
        if version == current {
            return Ok(());
        }
        self.load(version)
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when at least one key exists: then every request must present one.
    pub fn enabled(&self) -> bool {
        let _ = self.reload_if_changed();
        self.state.read().map(|s| !s.1.is_empty()).unwrap_or(true)
    }

    /// The org of a presented key, if valid.
    pub fn org_of(&self, key: &str) -> Option<String> {
        let _ = self.reload_if_changed();
        let h = hash_key(key);
        self.state.read().ok().and_then(|s| s.1.get(&h).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_resolve_to_their_org() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys.json");
        let ks = KeyStore::open(path.clone()).expect("open");
        assert!(!ks.enabled());
        let (key, stored) = create_key(&path, "acme", "ci").expect("create");
        assert!(key.starts_with(KEY_PREFIX));
        let file = std::fs::read_to_string(&path).expect("read");
        assert!(!file.contains(&key), "raw key written to disk");
        assert!(file.contains(&stored.hash));
        assert!(ks.enabled());
        assert_eq!(ks.org_of(&key).as_deref(), Some("acme"));
        assert_eq!(ks.org_of("sk-loupe-wrong"), None);
        assert!(create_key(&path, "bad org!", "x").is_err());
    }
}
