//! API keys: generated once, shown once, stored as SHA-256 hashes in a JSON file.
//!
//! Every change to the file (create, revoke; from the CLI or the HTTP API) runs under an
//! exclusive lock on `<keys file>.lock` and replaces the file atomically (temp file, fsync,
//! rename, fsync of the directory): writers in one server and the CLI next to it never lose each
//! other's changes, and readers never see a half-written file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of every Loupe key, so leaked keys are recognisable by secret scanners.
pub const KEY_PREFIX: &str = "sk-loupe-";
/// Longest key name (label), in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most keys one org may have: the file is read whole on every change.
pub const MAX_KEYS_PER_ORG: usize = 1000;

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
    /// Id of the key whose holder created this one through the API (`None`: the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Why a key could not be created, revoked or read. Mapped to HTTP statuses in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A bad org or name; the message names the field and what to do.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// No such key in the caller's org (keys of other orgs are not found either).
    #[error("{0}")]
    NotFound(String),
    /// Understood but not allowed (a key revoking itself, too many keys).
    #[error("{0}")]
    Forbidden(String),
    /// The key file cannot be read or written.
    #[error("{0}")]
    Storage(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn read(path: &Path) -> Result<Vec<StoredKey>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<KeyFile>(&bytes)
            .map(|f| f.keys)
            .map_err(|e| {
                KeyError::Storage(format!("key file {} is not valid: {e}", path.display()))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(KeyError::Storage(format!(
            "cannot read key file {}: {e}",
            path.display()
        ))),
    }
}

fn validate_org(org: &str) -> Result<(), KeyError> {
    if org.is_empty()
        || org.len() > 128
        || !org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(KeyError::Invalid {
            field: "org",
            message: format!(
                "org name '{org}' is not valid: use 1-128 characters from A-Z a-z 0-9 - _ ."
            ),
        });
    }
    Ok(())
}

/// A key's name: at most [`MAX_NAME_CHARS`] characters, no control characters, no leading or
/// trailing spaces. Empty is allowed here (the CLI's default); the API requires one.
pub fn validate_name(name: &str) -> Result<(), KeyError> {
    let bad = |why: String| KeyError::Invalid {
        field: "name",
        message: format!("name {why}"),
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad(format!(
            "is {} characters long: use at most {MAX_NAME_CHARS}",
            name.chars().count()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(
            "contains a control character (newline, tab, …): use a one-line label".into(),
        ));
    }
    if name.trim() != name {
        return Err(bad("starts or ends with spaces: remove them".into()));
    }
    Ok(())
}

/// The lock serialising every change to `path`, held while the returned file is open.
fn lock(path: &Path) -> Result<File, KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| KeyError::Storage(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| KeyError::Storage(format!("cannot open {}: {e}", lock_path.display())))?;
    f.lock()
        .map_err(|e| KeyError::Storage(format!("cannot lock {}: {e}", lock_path.display())))?;
    Ok(f)
}

/// Writes `keys` to `path` atomically: a temp file, fsync, rename over `path`, fsync the dir.
fn write(path: &Path, keys: Vec<StoredKey>) -> Result<(), KeyError> {
    let io = |what: &Path, e: std::io::Error| {
        KeyError::Storage(format!("cannot write {}: {e}", what.display()))
    };
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(&KeyFile { keys })
        .map_err(|e| KeyError::Storage(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// Reads the keys under the lock, lets `change` edit them, writes them back atomically. Returns
/// what `change` returned, the keys as written and the file's version (taken under the lock, so
/// it is the version of exactly these keys).
fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut Vec<StoredKey>) -> Result<T, KeyError>,
) -> Result<(T, Vec<StoredKey>, Option<FileVersion>), KeyError> {
    let guard = lock(path)?;
    let mut keys = read(path)?;
    let out = change(&mut keys)?;
    write(path, keys.clone())?;
    let version = version_of(path);
    drop(guard);
    Ok((out, keys, version))
}

fn new_key(org: &str, name: &str, created_by: Option<&str>) -> (String, StoredKey) {
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
        created_by: created_by.map(str::to_string),
    };
    (key, stored)
}

type Created = ((String, StoredKey), Vec<StoredKey>, Option<FileVersion>);

fn create_in(
    path: &Path,
    org: &str,
    name: &str,
    created_by: Option<&str>,
) -> Result<Created, KeyError> {
    validate_org(org)?;
    validate_name(name)?;
    update(path, |keys| {
        if keys.iter().filter(|k| k.org_id == org).count() >= MAX_KEYS_PER_ORG {
            return Err(KeyError::Forbidden(format!(
                "org '{org}' already has {MAX_KEYS_PER_ORG} API keys: revoke unused ones first"
            )));
        }
        let (key, stored) = new_key(org, name, created_by);
        keys.push(stored.clone());
        Ok((key, stored))
    })
}

/// Removes key `id`. `org`: only a key of this org is found (the API); `None`: any (the CLI).
/// `caller`: the id of the key asking, which may not revoke itself.
fn revoke_in(
    path: &Path,
    id: &str,
    org: Option<&str>,
    caller: Option<&str>,
) -> Result<(StoredKey, Vec<StoredKey>, Option<FileVersion>), KeyError> {
    update(path, |keys| {
        let Some(i) = keys
            .iter()
            .position(|k| k.id == id && org.is_none_or(|o| k.org_id == o))
        else {
            let shown: String = id.chars().take(80).collect();
            return Err(KeyError::NotFound(match org {
                Some(o) => format!(
                    "no API key with id {shown:?} in org '{o}' (it may have been revoked already); GET /v1/keys lists the org's keys"
                ),
                None => format!(
                    "no API key with id {shown:?} (it may have been revoked already); 'loupe keys list' shows the ids"
                ),
            }));
        };
        if caller == Some(id) {
            return Err(KeyError::Forbidden(
                "a key cannot revoke itself (that would lock you out): sign in with another key \
                 of the org to revoke this one, or run 'loupe keys revoke ID' on the server"
                    .into(),
            ));
        }
        Ok(keys.remove(i))
    })
}

/// Creates a key for `org`, stores its hash and returns the key (to be printed once).
pub fn create_key(path: &Path, org: &str, name: &str) -> Result<(String, StoredKey), KeyError> {
    create_in(path, org, name, None).map(|(created, _, _)| created)
}

/// Revokes key `id` of any org (the CLI); returns it and how many keys remain in the file.
pub fn revoke_key(path: &Path, id: &str) -> Result<(StoredKey, usize), KeyError> {
    revoke_in(path, id, None, None).map(|(k, rest, _)| (k, rest.len()))
}

pub fn list_keys(path: &Path) -> Result<Vec<StoredKey>, KeyError> {
    read(path)
}

/// (mtime, size, inode) of the key file.
type FileVersion = (SystemTime, u64, u64);

/// Identifies the file version by (mtime, size, inode): every write renames a new file into
/// place, so the inode changes even when two writes share a timestamp. `None`: no file.
fn version_of(path: &Path) -> Option<FileVersion> {
    std::fs::metadata(path).ok().and_then(|m| {
        use std::os::unix::fs::MetadataExt;
        m.modified().ok().map(|t| (t, m.len(), m.ino()))
    })
}

/// Who presented a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub org: String,
    /// The id of the key presented.
    pub key_id: String,
}

type KeyMap = HashMap<String, Caller>;

fn key_map(keys: Vec<StoredKey>) -> KeyMap {
    keys.into_iter()
        .map(|k| {
            (
                k.hash,
                Caller {
                    org: k.org_id,
                    key_id: k.id,
                },
            )
        })
        .collect()
}

/// The server's view of the key file; re-read when the file changes (so `loupe keys create`
/// takes effect without a restart), and replaced at once by the server's own changes (so a key
/// revoked through the API is refused by the very next request).
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    state: RwLock<(Option<FileVersion>, KeyMap)>,
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
        ks.load(ks.version()).map_err(|e| e.to_string())?;
        Ok(ks)
    }

    fn version(&self) -> Option<FileVersion> {
        version_of(&self.path)
    }

    fn load(&self, version: Option<FileVersion>) -> Result<(), KeyError> {
        let map = key_map(read(&self.path)?);
        self.install(version, map);
        Ok(())
    }

    fn install(&self, version: Option<FileVersion>, map: KeyMap) {
        // A poisoned lock only means a reader panicked; the map itself is always whole.
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        *s = (version, map);
    }

    /// One `stat` per call; the file is read again only when it changed (or appeared/vanished).
    /// With no keys file (the default on loopback) nothing is opened per request.
    fn reload_if_changed(&self) -> Result<(), KeyError> {
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

    /// The org and key id of a presented key, if valid.
    pub fn caller(&self, key: &str) -> Option<Caller> {
        let _ = self.reload_if_changed();
        let h = hash_key(key);
        self.state.read().ok().and_then(|s| s.1.get(&h).cloned())
    }

    /// The org of a presented key, if valid.
    pub fn org_of(&self, key: &str) -> Option<String> {
        self.caller(key).map(|c| c.org)
    }

    /// The keys of `org`, oldest first.
    pub fn list(&self, org: &str) -> Result<Vec<StoredKey>, KeyError> {
        Ok(read(&self.path)?
            .into_iter()
            .filter(|k| k.org_id == org)
            .collect())
    }

    /// Creates a key of `org` on behalf of key `created_by`; usable by the next request.
    /// Blocking (file lock, fsync): call it off the async threads.
    pub fn create(
        &self,
        org: &str,
        name: &str,
        created_by: Option<&str>,
    ) -> Result<(String, StoredKey), KeyError> {
        let (created, keys, version) = create_in(&self.path, org, name, created_by)?;
        self.install(version, key_map(keys));
        Ok(created)
    }

    /// Revokes key `id` of `org` on behalf of key `caller` (which may not revoke itself); the
    /// very next request with the revoked key is refused. Blocking: call it off the async threads.
    pub fn revoke(&self, org: &str, id: &str, caller: &str) -> Result<StoredKey, KeyError> {
        let (revoked, keys, version) = revoke_in(&self.path, id, Some(org), Some(caller))?;
        self.install(version, key_map(keys));
        Ok(revoked)
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

    #[test]
    fn revoked_keys_stop_working_at_once_and_only_in_their_org() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys.json");
        let (admin, a) = create_key(&path, "acme", "admin").expect("create");
        let (_, g) = create_key(&path, "globex", "g").expect("create");
        let ks = KeyStore::open(path.clone()).expect("open");
        let (key, k) = ks.create("acme", "ci", Some(&a.id)).expect("create");
        assert_eq!(k.created_by.as_deref(), Some(a.id.as_str()));
        assert_eq!(
            ks.caller(&key),
            Some(Caller {
                org: "acme".into(),
                key_id: k.id.clone()
            })
        );
        // Another org's key is not found, nor is an unknown id; nothing changes.
        assert!(matches!(
            ks.revoke("acme", &g.id, &a.id),
            Err(KeyError::NotFound(_))
        ));
        assert!(matches!(
            ks.revoke("acme", "nope", &a.id),
            Err(KeyError::NotFound(_))
        ));
        assert!(matches!(
            ks.revoke("acme", &k.id, &k.id),
            Err(KeyError::Forbidden(_))
        ));
        assert_eq!(list_keys(&path).expect("list").len(), 3);
        assert_eq!(ks.revoke("acme", &k.id, &a.id).expect("revoke").id, k.id);
        assert_eq!(ks.org_of(&key), None);
        assert_eq!(ks.org_of(&admin).as_deref(), Some("acme"));
        assert!(matches!(
            ks.revoke("acme", &k.id, &a.id),
            Err(KeyError::NotFound(_))
        ));
        // The CLI revokes any org's key; a store that did not write sees it on its next call.
        assert_eq!(revoke_key(&path, &g.id).expect("revoke").1, 1);
        assert_eq!(ks.list("globex").expect("list"), vec![]);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("").is_ok());
        assert!(validate_name("ci – prod").is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        for bad in [
            "x".repeat(MAX_NAME_CHARS + 1),
            "a\nb".into(),
            " padded".into(),
        ] {
            match validate_name(&bad) {
                Err(KeyError::Invalid { field, .. }) => assert_eq!(field, "name"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn concurrent_writers_lose_no_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub").join("keys.json");
        let ks = std::sync::Arc::new(KeyStore::open(path.clone()).expect("open"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (ks, path) = (ks.clone(), path.clone());
                std::thread::spawn(move || {
                    let mut made = Vec::new();
                    for i in 0..10 {
                        // Half through a store, half like the CLI (no store): one lock for both.
                        let (key, _) = if t % 2 == 0 {
                            ks.create("acme", &format!("t{t}-{i}"), None)
                        } else {
                            create_key(&path, "acme", &format!("t{t}-{i}"))
                        }
                        .expect("create");
                        made.push(key);
                    }
                    made
                })
            })
            .collect();
        let made: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(list_keys(&path).expect("list").len(), 80);
        for key in &made {
            assert_eq!(ks.org_of(key).as_deref(), Some("acme"), "lost {key}");
        }
        assert!(!dir.path().join("sub").join("keys.json.tmp").exists());
    }
}
