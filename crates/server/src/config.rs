//! Configuration: defaults ← TOML file ← env `LOUPE__SECTION__KEY` ← command-line flags.
//! Every section is strict: an unknown key is an error naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use loupe_ingest::IngestLimits;
use loupe_storage::StorageConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ingest: IngestLimits,
    pub prices: PricesConfig,
    pub auth: AuthConfig,
    pub query: QueryConfig,
    pub gateway: loupe_gateway::GatewayConfig,
    pub providers: loupe_gateway::ProvidersConfig,
    pub otlp: crate::otlp::OtlpConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer than this is cancelled (422 `hql.timeout`).
    pub timeout_secs: u64,
    /// A result with more rows than this is refused (422 `hql.too_many_rows`).
    pub max_rows: usize,
    /// Memory one query may use (422 `hql.out_of_memory` past it).
    pub memory_bytes: usize,
    /// Queries executing at once; others wait. Keeps CPU for ingest.
    pub max_concurrent: usize,
    /// Answer dashboard-shaped queries from the hourly roll-up (same results, less work).
    pub use_rollups: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout_secs: 30,
            max_rows: 100_000,
            memory_bytes: 1 << 30,
            max_concurrent: 2,
            use_rollups: true,
        }
    }
}

impl QueryConfig {
    pub fn limits(&self) -> loupe_query::QueryLimits {
        loupe_query::QueryLimits {
            memory_bytes: self.memory_bytes,
            target_partitions: 2,
            max_concurrent: self.max_concurrent,
            use_rollups: self.use_rollups,
            hql: loupe_query::HqlLimits {
                max_rows: self.max_rows,
                timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. A non-loopback address requires API keys.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (after decompression); larger bodies get 413.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            max_body_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricesConfig {
    /// A JSON file in the bundled table's format whose entries add to or replace bundled prices.
    pub override_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Where hashed API keys are kept (default: `<storage.data_dir>/keys.json`).
    pub keys_file: Option<PathBuf>,
}

/// Command-line overrides (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the layered configuration. `file` must exist when given.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(format!("config file {} does not exist", f.display()));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("LOUPE__").split("__"));
        if let Some(l) = overrides.listen {
            fig = fig.merge(Serialized::default("server.listen", l));
        }
        if let Some(d) = &overrides.data_dir {
            fig = fig.merge(Serialized::default("storage.data_dir", d));
        }
        fig.extract::<Config>().map_err(|e| {
            let mut msg = String::from("invalid configuration: ");
            for (i, err) in e.into_iter().enumerate() {
                if i > 0 {
                    msg.push_str("; ");
                }
                msg.push_str(&err.to_string());
                if let Some(src) = &err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                    msg.push_str(&format!(" (from {src})"));
                }
            }
            msg
        })
    }

    pub fn keys_file(&self) -> PathBuf {
        self.auth
            .keys_file
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("keys.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../loupe.example.toml"
        ));
        let cfg =
            Config::load(Some(path), &Overrides::default()).expect("example config must load");
        assert_eq!(cfg.server.listen.port(), 8787);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "[storage]\nflush_intervall_ms = 5\n").expect("write");
        let err = Config::load(Some(&f), &Overrides::default()).expect_err("must fail");
        assert!(err.contains("flush_intervall_ms"), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"127.0.0.1:9999\"\n[storage]\nflush_interval_ms = 7\n",
        )
        .expect("write");
        let o = Overrides {
            listen: Some("127.0.0.1:1234".parse().expect("addr")),
            data_dir: Some("/tmp/x".into()),
        };
        let cfg = Config::load(Some(&f), &o).expect("load");
        assert_eq!(cfg.server.listen.port(), 1234);
        assert_eq!(cfg.storage.flush_interval_ms, 7);
        assert_eq!(cfg.storage.data_dir, PathBuf::from("/tmp/x"));
    }
}
