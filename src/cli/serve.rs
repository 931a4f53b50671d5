//! `replicim serve --config FILE`: one array — its CIM-XML listeners, its
//! NBD export, its replication link and its data directory.
//!
//! The configuration is TOML:
//!
//! ```toml
//! name = "site-a"                  # the array; also the HOST in object paths
//! data_dir = "/var/lib/replicim/site-a"
//!
//! [nbd]
//! listen = "127.0.0.1:10809"       # every volume is an export of its name
//! tls = "optional"                 # NBD_OPT_STARTTLS: off | optional | required
//! client_certs = true              # a TLS client must show a certificate the
//!                                  # array's CA signed (serve --issue-client)
//!
//! [link]
//! listen = "127.0.0.1:7001"        # replication link from peers
//! # heartbeat_ms = 500
//! # timeout_ms = 3000              # silence that declares the link down
//! # auth = false                   # mutual TLS with pinned peers is on by
//! #                                # default; off, the array warns at start
//!
//! [[peer]]
//! name = "site-b"
//! link = "127.0.0.1:17001"         # its link listener
//! cim = "127.0.0.1:15988"          # where consoles reach it (object paths)
//! fingerprint = "sha256:..."       # its link certificate (`replicim serve
//!                                  # --config ITS.toml --link-fingerprint`);
//!                                  # or fingerprints = [...], or cert = "its.pem"
//!
//! [[volume]]                       # created at first start if missing
//! name = "vol0"
//! size_mib = 64
//!
//! # [array]
//! # capacity_gib = 1024             # the storage pool (volumes counted at full size)
//! # window = 1024                   # sync blocks in flight per pair
//! # run_batch = 64                  # sync blocks per link message
//!
//! [cim]
//! http = ["127.0.0.1:5988"]        # CIM-XML over HTTP
//! https = ["127.0.0.1:5989"]       # CIM-XML over HTTPS
//! user = "admin"                   # HTTP Basic user
//! password = "secret"              # or password_file = "...", else generated
//! auth = true                      # Basic authentication (default true)
//! # host = "array1.example:5988"   # the address every object path names
//!                                  # (default: the first http listener)
//! # tls_cert = "cert.pem"          # default: data_dir/tls/cert.pem, signed by
//! # tls_key = "key.pem"            # the array's CA (data_dir/tls/ca.pem)
//! # client_certs = true            # HTTPS: a certificate the array's CA signed
//!                                  # stands in for the password
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
use crate::core::{ArrayConfig, BLOCK_SIZE};
use crate::link;
use crate::nbd;
use crate::node::{self, NodeBackend, VolumeCatalog};
use crate::provider::{Hosts, Replication};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub cim: CimConfig,
    pub nbd: Option<NbdConfig>,
    pub link: Option<LinkConfig>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    #[serde(default, rename = "volume")]
    pub volumes: Vec<VolumeConfig>,
    #[serde(default)]
    pub array: ArrayTuning,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NbdConfig {
    pub listen: String,
    /// TLS by NBD_OPT_STARTTLS: off, optional (the default) or required.
    #[serde(default)]
    pub tls: nbd::server::TlsMode,
    /// TLS clients must show a certificate the array's CA signed.
    #[serde(default = "yes")]
    pub client_certs: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub listen: String,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Mutual TLS 1.3 with pinned peers (default). Off only on purpose.
    #[serde(default = "yes")]
    pub auth: bool,
}

fn default_heartbeat() -> u64 {
    500
}
fn default_timeout() -> u64 {
    3000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    /// The peer's link listener.
    pub link: String,
    /// The peer's CIM-XML address (host:port) as consoles reach it.
    pub cim: Option<String>,
    /// The SHA-256 fingerprint of the peer's link certificate.
    pub fingerprint: Option<String>,
    /// More fingerprints (an old and a new one while keys rotate).
    #[serde(default)]
    pub fingerprints: Vec<String>,
    /// The peer's link certificate (PEM), instead of its fingerprint.
    pub cert: Option<PathBuf>,
}

impl PeerConfig {
    /// Every fingerprint this peer may present.
    pub fn pinned(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for f in self.fingerprint.iter().chain(&self.fingerprints) {
            out.push(link::tls::parse_fingerprint(f)?);
        }
        if let Some(c) = &self.cert {
            out.push(link::tls::fingerprint_of_file(c)?);
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub name: String,
    pub size_mib: u64,
}

/// Core tunables a site may change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayTuning {
    /// Sync blocks in flight per pair (default 1024: 4 MiB).
    #[serde(default = "default_window")]
    pub window: u64,
    /// Sync blocks per link message (default 64: 256 KiB).
    #[serde(default = "default_run_batch")]
    pub run_batch: u64,
    /// The space volumes may take, in GiB: the storage pool consoles see
    /// (default 1024; volume files are sparse, so it is not reserved).
    #[serde(default = "default_capacity_gib")]
    pub capacity_gib: u64,
}

fn default_capacity_gib() -> u64 {
    1024
}

fn default_run_batch() -> u64 {
    64
}

fn default_window() -> u64 {
    1024
}

impl Default for ArrayTuning {
    fn default() -> Self {
        ArrayTuning {
            window: default_window(),
            run_batch: default_run_batch(),
            capacity_gib: default_capacity_gib(),
        }
    }
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
    /// Over HTTPS, a client certificate the array's CA signed stands in
    /// for the password.
    #[serde(default = "yes")]
    pub client_certs: bool,
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
        let cfg = Config::parse(path)?;
        cfg.check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// The TOML alone, unchecked (enough to find the data directory).
    pub fn parse(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        crate::core::names::array(&cfg.name).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Checks what TOML types cannot: names, sizes, peers.
    pub fn check(&self) -> Result<(), String> {
        use crate::core::names;
        names::array(&self.name).map_err(|e| e.to_string())?;
        for p in &self.peers {
            names::array(&p.name).map_err(|e| format!("[[peer]]: {e}"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.volumes {
            names::volume(&v.name).map_err(|e| format!("[[volume]]: {e}"))?;
            if !seen.insert(&v.name) {
                return Err(format!("[[volume]] {} is listed twice", v.name));
            }
        }
        if self.link.as_ref().is_some_and(|l| l.auth) {
            for p in &self.peers {
                if p.fingerprint.is_none() && p.fingerprints.is_empty() && p.cert.is_none() {
                    return Err(format!(
                        "[[peer]] {}: the link is authenticated (the default): give its link certificate's \
                         `fingerprint` (print it with `replicim serve --config ITS.toml --link-fingerprint`) \
                         or its `cert`, or turn authentication off with [link] auth = false",
                        p.name
                    ));
                }
                for f in p.fingerprint.iter().chain(&p.fingerprints) {
                    link::tls::parse_fingerprint(f)
                        .map_err(|e| format!("[[peer]] {}: {e}", p.name))?;
                }
            }
        }
        if self.peers.iter().any(|p| p.name == self.name) {
            return Err(format!("peer {} is this array itself", self.name));
        }
        if !self.peers.is_empty() && self.link.is_none() {
            return Err("peers need a [link] listen address".into());
        }
        for v in &self.volumes {
            if v.size_mib == 0 || v.size_mib > 1 << 20 {
                return Err(format!(
                    "volume {}: size_mib must be 1..=1048576 (1 TiB)",
                    v.name
                ));
            }
        }
        if self.array.capacity_gib == 0 || self.array.capacity_gib > 1 << 20 {
            return Err("array.capacity_gib must be 1..=1048576 (1 GiB to 1 PiB)".into());
        }
        if self.array.window == 0 || self.array.window > 1 << 16 {
            return Err("array.window must be 1..=65536 blocks".into());
        }
        // A link frame holds at most 1 MiB.
        if self.array.run_batch == 0 || self.array.run_batch > names::MAX_RUN_BATCH {
            return Err(format!(
                "array.run_batch must be 1..={} blocks",
                names::MAX_RUN_BATCH
            ));
        }
        Ok(())
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
    crate::secure::private_dir(&cfg.data_dir)?;
    crate::secure::write_private(
        &path,
        format!("user={}\npassword={pw}\n", cfg.cim.user).as_bytes(),
    )?;
    Ok(pw)
}

/// The array's node configuration from the serve configuration.
pub fn node_config(cfg: &Config) -> crate::node::NodeConfig {
    crate::node::NodeConfig {
        name: cfg.name.clone(),
        dir: crate::node::array_dir(&cfg.data_dir),
        volumes: cfg
            .volumes
            .iter()
            .map(|v| (v.name.clone(), v.size_mib * (1 << 20) / BLOCK_SIZE as u64))
            .collect(),
        array: ArrayConfig {
            window: cfg.array.window,
            run_batch: cfg.array.run_batch,
            capacity_blocks: cfg.array.capacity_gib * ((1 << 30) / BLOCK_SIZE as u64),
            ..ArrayConfig::default()
        },
    }
}

async fn bind(addr: &str, what: &str) -> Result<tokio::net::TcpListener, String> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| format!("{what} address {addr}: {e}"))?;
    tokio::net::TcpListener::bind(sa)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// The address consoles reach the array by, which every object path it
/// returns names: `[cim] host`, else its first HTTP (or HTTPS) listener,
/// else its name.
pub fn host(cfg: &Config) -> String {
    cfg.cim
        .host
        .clone()
        .or_else(|| cfg.cim.http.first().or(cfg.cim.https.first()).cloned())
        .unwrap_or_else(|| cfg.name.clone())
}

/// A host:port, [v6]:port or bare host without its port.
fn without_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr,
    }
}

/// The array's CA and server certificate (made at the first start).
pub fn pki(cfg: &Config) -> Result<crate::pki::Paths, String> {
    crate::secure::private_dir(&cfg.data_dir)?;
    crate::pki::ensure(
        &cfg.data_dir.join("tls"),
        &cfg.name,
        without_port(&host(cfg)),
    )
}

/// The certificate and key the array serves (configured, or its own).
fn server_pair(cfg: &Config, pki: &crate::pki::Paths) -> Result<(PathBuf, PathBuf), String> {
    match (&cfg.cim.tls_cert, &cfg.cim.tls_key) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        (None, None) => Ok((pki.cert.clone(), pki.key.clone())),
        _ => Err("tls_cert and tls_key go together".into()),
    }
}

/// The directory of the array's link identity.
pub fn link_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("link")
}

/// The array's link identity (made at the first start).
pub fn link_identity(cfg: &Config) -> Result<link::tls::Identity, String> {
    crate::secure::private_dir(&cfg.data_dir)?;
    link::tls::ensure_identity(&link_dir(cfg), &cfg.name)
}

/// The link's security from the configuration: mutual TLS with every
/// peer pinned, or None when `[link] auth = false` (warned of).
fn link_tls(cfg: &Config) -> Result<Option<link::tls::LinkTls>, String> {
    if cfg.link.as_ref().is_some_and(|l| !l.auth) {
        tracing::warn!(
            "the replication link is NOT authenticated or encrypted ([link] auth = false): \
             anyone who can reach the link port can pose as a peer"
        );
        return Ok(None);
    }
    let identity = link_identity(cfg)?;
    tracing::info!(fingerprint = %identity.fingerprint(), "link identity");
    let mut peers = std::collections::BTreeMap::new();
    for p in &cfg.peers {
        peers.insert(
            p.name.clone(),
            p.pinned()
                .map_err(|e| format!("[[peer]] {}: {e}", p.name))?,
        );
    }
    Ok(Some(link::tls::LinkTls { identity, peers }))
}

/// Runs the array and its listeners until SIGINT or SIGTERM.
pub async fn serve(cfg: Config) -> Result<(), String> {
    crate::secure::private_dir(&cfg.data_dir)?;
    let host = host(&cfg);
    let pki = pki(&cfg)?;
    let (cert, key) = server_pair(&cfg, &pki)?;
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

    // The array: its link first (the node forwards its events), then the
    // node, which replays the journal before anything listens.
    let link_cfg = link::tcp::Config {
        me: cfg.name.clone(),
        peers: cfg
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.link.clone()))
            .collect(),
        timing: cfg
            .link
            .as_ref()
            .map_or_else(link::Timing::default, |l| link::Timing {
                heartbeat_ms: l.heartbeat_ms,
                timeout_ms: l.timeout_ms,
            }),
        backoff_min: std::time::Duration::from_millis(100),
        backoff_max: std::time::Duration::from_secs(2),
        tls: link_tls(&cfg)?,
    };
    let listener = match &cfg.link {
        Some(l) => {
            let listener = bind(&l.listen, "link").await?;
            tracing::info!(address = %l.listen, "replication link listening");
            Some(listener)
        }
        None => None,
    };
    let node_cfg = node_config(&cfg);
    let (node, thread) = node::start(&node_cfg, |sink| match listener {
        Some(l) => link::tcp::start_with(link_cfg, l, sink),
        None => link::tcp::idle(),
    })?;
    if let Some(stats) = node.stats() {
        tracing::info!(
            array = %cfg.name,
            replayed = stats.recovery.replayed,
            torn_bytes = stats.recovery.torn_bytes,
            "array open"
        );
    }

    // The provider: this array and where consoles reach its peers.
    let my_cim = host.clone();
    let mut hosts: Hosts = cfg
        .peers
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.cim.clone().unwrap_or_else(|| p.name.clone()),
            )
        })
        .collect();
    hosts.insert(cfg.name.clone(), my_cim);
    let backend = Arc::new(NodeBackend { node: node.clone() });
    let rep = Arc::new(Replication::new(backend, &cfg.name, hosts));
    rep.register_profiles(&cim.interop);
    let mut dispatcher = cim.dispatcher;
    dispatcher.register(rep)?;

    let state = Arc::new(State::new(
        Arc::new(dispatcher),
        ServerConfig {
            credentials,
            max_body: cfg.cim.max_body,
            ..ServerConfig::default()
        },
    ));
    let tls = if cfg.cim.https.is_empty() {
        None
    } else {
        let client_ca = cfg.cim.client_certs.then_some(pki.ca.as_path());
        Some(server::tls_acceptor(&cert, &key, client_ca)?)
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
        let l = bind(addr, "CIM-XML").await?;
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
    if let Some(n) = &cfg.nbd {
        let l = bind(&n.listen, "NBD").await?;
        let tls = match n.tls {
            nbd::server::TlsMode::Off => None,
            _ => {
                let clients = if n.client_certs {
                    crate::pki::ClientCerts::Required
                } else {
                    crate::pki::ClientCerts::Off
                };
                Some(crate::pki::server_config(
                    &cert,
                    &key,
                    Some(&pki.ca),
                    clients,
                )?)
            }
        };
        let loopback = l
            .local_addr()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false);
        if n.tls != nbd::server::TlsMode::Required && !loopback {
            tracing::warn!(
                address = %n.listen,
                "NBD listens beyond this host without [nbd] tls = \"required\": \
                 anyone who reaches it can read and write the volumes"
            );
        }
        if n.tls != nbd::server::TlsMode::Off && !n.client_certs {
            tracing::warn!(
                "NBD over TLS takes clients without certificates ([nbd] client_certs = false)"
            );
        }
        tracing::info!(address = %n.listen, tls = ?n.tls, "NBD listening");
        let mut stop = stop_tx.subscribe();
        let catalog = Arc::new(VolumeCatalog { node: node.clone() });
        let nbd_cfg = nbd::server::Config {
            tls: n.tls,
            acceptor: tls.map(tokio_rustls::TlsAcceptor::from),
            ..nbd::server::Config::default()
        };
        tasks.push(tokio::spawn(async move {
            nbd::server::run(l, catalog, nbd_cfg, async move {
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
    node.stop();
    let _ = crate::rt::blocking(|| thread.join());
    tracing::info!("stopped");
    Ok(())
}
