//! `replicim serve --config FILE`: one array's CIM-XML listeners.
//!
//! The configuration is TOML:
//!
//! ```toml
//! name = "site-a"                  # the array; also the HOST in object paths
//! data_dir = "/var/lib/replicim/site-a"
//!
//! [cim]
//! http = ["127.0.0.1:5988"]        # CIM-XML over HTTP
//! https = ["127.0.0.1:5989"]       # CIM-XML over HTTPS
//! user = "admin"                   # HTTP Basic user
//! password = "secret"              # or password_file = "...", else generated
//! auth = true                      # Basic authentication (default true)
//! # tls_cert = "cert.pem"          # default: self-signed pair in data_dir/tls
//! # tls_key = "key.pem"
//! # extra_mof = ["site.mof"]       # more classes; a bad file stops start-up
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::cim::dispatch::Dispatcher;
use crate::cim::interop::{profile_path, Interop};
use crate::cim::repo::INTEROP;
use crate::cim::schema::{self, IMPLEMENTATION};
use crate::cim::server::{self, ServerConfig, State};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub cim: CimConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CimConfig {
    #[serde(default = "default_http")]
    pub http: Vec<String>,
    #[serde(default = "default_https")]
    pub https: Vec<String>,
    #[serde(default = "default_user")]
    pub user: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default = "yes")]
    pub auth: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub extra_mof: Vec<PathBuf>,
    pub host: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

fn default_http() -> Vec<String> {
    vec!["127.0.0.1:5988".into()]
}
fn default_https() -> Vec<String> {
    vec!["127.0.0.1:5989".into()]
}
fn default_user() -> String {
    "admin".into()
}
fn yes() -> bool {
    true
}
fn default_max_body() -> usize {
    4 << 20
}

impl Default for CimConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The WBEM side of one array: dispatcher plus the interop registry that
/// providers add their profiles to.
pub struct Cim {
    pub dispatcher: Dispatcher,
    pub interop: Arc<Interop>,
}

/// Builds the repository (shipped MOF plus `extra`) and the interop
/// provider, with the SNIA Server profile conforming to the object manager.
pub fn build(host: &str, extra: &[(String, String)]) -> Result<Cim, String> {
    let repo = schema::load(extra).map_err(|e| e.to_string())?;
    let mut dispatcher = Dispatcher::new(repo, host);
    let interop = Arc::new(Interop::new(host, &[INTEROP, IMPLEMENTATION]));
    dispatcher.register(interop.clone())?;
    interop.conforms(
        profile_path("replicim:profile:SNIA:Server:1.6.1"),
        interop.object_manager_path(),
    );
    Ok(Cim {
        dispatcher,
        interop,
    })
}

/// Resolves the password: given, from a file, or generated into
/// `data_dir/credentials` (kept across restarts).
pub fn password(cfg: &Config) -> Result<String, String> {
    if let Some(p) = &cfg.cim.password {
        return Ok(p.clone());
    }
    if let Some(f) = &cfg.cim.password_file {
        return std::fs::read_to_string(f)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{}: {e}", f.display()));
    }
    let path = cfg.data_dir.join("credentials");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(p) = text.lines().find_map(|l| l.strip_prefix("password=")) {
            return Ok(p.trim().to_string());
        }
    }
    let mut seed = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let pw: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    std::fs::write(&path, format!("user={}\npassword={pw}\n", cfg.cim.user))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(pw)
}

/// Runs the listeners until SIGINT or SIGTERM.
pub async fn serve(cfg: Config) -> Result<(), String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    let host = cfg.cim.host.clone().unwrap_or_else(|| cfg.name.clone());
    let mut extra = Vec::new();
    for f in &cfg.cim.extra_mof {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        extra.push((f.display().to_string(), text));
    }
    let cim = build(&host, &extra)?;
    let credentials = if cfg.cim.auth {
        Some((cfg.cim.user.clone(), password(&cfg)?))
    } else {
        None
    };
    let state = Arc::new(State {
        dispatcher: Arc::new(cim.dispatcher),
        config: ServerConfig {
            credentials,
            max_body: cfg.cim.max_body,
            ..ServerConfig::default()
        },
    });
    let tls = if cfg.cim.https.is_empty() {
        None
    } else {
        let (cert, key) = match (&cfg.cim.tls_cert, &cfg.cim.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => server::self_signed(&cfg.data_dir, &host)?,
            _ => return Err("tls_cert and tls_key go together".into()),
        };
        Some(server::tls_acceptor(&cert, &key)?)
    };
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    let listeners = cfg
        .cim
        .http
        .iter()
        .map(|a| (a, None))
        .chain(cfg.cim.https.iter().map(|a| (a, tls.clone())));
    for (addr, tls) in listeners {
        let sa: SocketAddr = addr
            .parse()
            .map_err(|e| format!("listen address {addr}: {e}"))?;
        let l = tokio::net::TcpListener::bind(sa)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %l.local_addr().map_err(|e| e.to_string())?, scheme, "CIM-XML listening");
        let mut stop = stop_tx.subscribe();
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            server::run(l, tls, state, async move {
                let _ = stop.recv().await;
            })
            .await
        }));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: draining connections");
    let _ = stop_tx.send(());
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}
