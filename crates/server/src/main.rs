//! `loupe`: the LLM gateway and observability engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loupe_server::config::{Config, Overrides};
use loupe_server::keys;

#[derive(Parser)]
#[command(
    name = "loupe",
    version,
    about = "Loupe: self-hosted LLM gateway and observability engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (defaults: 127.0.0.1:8787, data in ./loupe-data).
    Serve {
        /// TOML config file (see loupe.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8787 (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides storage.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run an HQL query against a running server (or directly on a data directory with
    /// --data-dir) and print the result.
    Query {
        /// The HQL query, e.g. 'requests | summarize cost = sum(cost_usd) by model'.
        query: String,
        /// Server URL (default: the configured listen address).
        #[arg(long, conflicts_with = "data_dir")]
        server: Option<String>,
        /// Read this data directory directly instead of asking a server (read-only; a server may
        /// be running on it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The org whose rows a --data-dir query reads.
        #[arg(long, default_value = "default", requires = "data_dir")]
        org: String,
        /// API key (or env LOUPE_API_KEY); needed once keys exist.
        #[arg(long, env = "LOUPE_API_KEY")]
        key: Option<String>,
        /// Output: table (default), csv or json.
        #[arg(long, default_value = "table")]
        format: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for an org; the key is printed once and stored hashed.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Revoke a key by id (any org); a running server refuses it from its next request.
    Revoke {
        /// The key's id, as printed by `loupe keys list`.
        id: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOUPE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,buoyant_kernel=off,deltalake_core=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load(config: Option<PathBuf>, overrides: Overrides) -> Result<Config, String> {
    Config::load(config.as_deref(), &overrides)
}

/// The config of a command that only takes `--config` and `--data-dir`.
fn load_data_dir(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Config, String> {
    load(
        config,
        Overrides {
            listen: None,
            data_dir,
        },
    )
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let cfg = load(config, Overrides { listen, data_dir })?;
            // Query planning and execution recurse deeply on large plans: 8 MiB stacks.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .thread_stack_size(8 << 20)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start runtime: {e}"))?;
            rt.block_on(loupe_server::serve(cfg))
        }
        Command::Query {
            query,
            server,
            data_dir,
            org,
            key,
            format,
            config,
        } => {
            if let Some(dir) = data_dir {
                let cfg = load_data_dir(config, Some(dir))?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_stack_size(8 << 20)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start runtime: {e}"))?;
                return rt.block_on(loupe_server::cli::query_dir(&cfg, &org, &query, &format));
            }
            let cfg = load(config, Overrides::default())?;
            let server = server.unwrap_or_else(|| format!("http://{}", cfg.server.listen));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start runtime: {e}"))?;
            rt.block_on(loupe_server::cli::query(
                &server,
                key.as_deref(),
                &query,
                &format,
            ))
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    org,
                    name,
                    config,
                    data_dir,
                },
        } => {
            let cfg = load_data_dir(config, data_dir)?;
            let (key, stored) =
                keys::create_key(&cfg.keys_file(), &org, &name).map_err(|e| e.to_string())?;
            println!("{key}");
            eprintln!(
                "created key {} for org '{}' (stored hashed in {}); it will not be shown again",
                stored.display_prefix,
                stored.org_id,
                cfg.keys_file().display()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List { config, data_dir },
        } => {
            let cfg = load_data_dir(config, data_dir)?;
            for k in keys::list_keys(&cfg.keys_file()).map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}…\t{}\t{}\t{}",
                    k.id, k.display_prefix, k.org_id, k.name, k.created_at
                );
            }
            Ok(())
        }
        Command::Keys {
            command:
                KeysCommand::Revoke {
                    id,
                    config,
                    data_dir,
                },
        } => {
            let cfg = load_data_dir(config, data_dir)?;
            let (k, left) = keys::revoke_key(&cfg.keys_file(), &id).map_err(|e| e.to_string())?;
            eprintln!(
                "revoked key {}… ('{}') of org '{}'",
                k.display_prefix, k.name, k.org_id
            );
            if left == 0 {
                eprintln!(
                    "warning: no API keys remain, so authentication is off: a running server accepts \
                     every request as org 'default' (and will not start on a non-loopback address)"
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    init_tracing();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
