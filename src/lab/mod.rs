//! The lab: two arrays, site-a and site-b, each a `replicim serve` child
//! process, joined through a fault switch, with remote-copy group `rcg0`
//! provisioned over CIM-XML.
//!
//! * [`Lab`] is the supervisor as a library: it writes both arrays'
//!   configurations into its directory, runs the switch, starts, kills and
//!   restarts the children, and provisions `rcg0` with the rcopy console
//!   (so through the provider's own CIM methods). The CLI, the conformance
//!   lab level and the cross-process tests all use it.
//! * [`switch`] is the fault switch: a TCP relay between the arrays' link
//!   ports that can black-hole traffic (`link down`: nothing is forwarded and
//!   no connection is closed, so each array must notice the silence itself)
//!   and limit bandwidth (`link throttle`).
//! * [`control`]: the supervisor listens on `DIR/lab.sock`; `replicim lab
//!   kill|start|link ...` are one-line requests to it.

pub mod control;
pub mod crash;
pub mod qemu;
pub mod switch;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cim::client::Client;
use crate::rcopy::console::{Console, Wait};

/// Group the lab provisions.
pub const GROUP: &str = "rcg0";
/// Volumes of the group, on site-a, mirrored to site-b.
pub const VOLUMES: [&str; 2] = ["vol0", "vol1"];
/// Size of each volume.
pub const VOLUME_MIB: u64 = 64;
pub const USER: &str = "admin";

/// What [`Lab::provision`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provisioned {
    Created,
    /// It existed, stopped on site-a as Primary, and was started again.
    Restarted,
    /// It existed and was left alone: site-a's role and status.
    Reused(String, String),
}

/// One of the two arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    A,
    B,
}

impl Site {
    pub fn name(self) -> &'static str {
        match self {
            Site::A => "site-a",
            Site::B => "site-b",
        }
    }
    pub fn other(self) -> Site {
        match self {
            Site::A => Site::B,
            Site::B => Site::A,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
    pub fn parse(s: &str) -> Result<Site, String> {
        match s {
            "A" | "a" | "site-a" => Ok(Site::A),
            "B" | "b" | "site-b" => Ok(Site::B),
            _ => Err(format!("{s}: the arrays are A (site-a) and B (site-b)")),
        }
    }
}

/// The ports of one array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SitePorts {
    pub http: u16,
    pub https: u16,
    pub nbd: u16,
    /// The array's own link listener.
    pub link: u16,
    /// The switch port that relays to `link` (where the peer dials).
    pub switch: u16,
}

/// Every port of the lab, on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub a: SitePorts,
    pub b: SitePorts,
}

impl Default for Ports {
    /// The endpoints of the interface: CIM-XML 5988/5989 and 15988/15989,
    /// NBD 10809 and 10810; links 7001/17001 behind switch ports 7002/17002.
    fn default() -> Self {
        Ports {
            a: SitePorts {
                http: 5988,
                https: 5989,
                nbd: 10809,
                link: 7001,
                switch: 7002,
            },
            b: SitePorts {
                http: 15988,
                https: 15989,
                nbd: 10810,
                link: 17001,
                switch: 17002,
            },
        }
    }
}

impl Ports {
    /// Ten ports the system has free now (for tests that run side by
    /// side). They are taken below the kernel's ephemeral range, so that no
    /// outgoing connection (a client's local port) or `bind(0)` elsewhere
    /// can take one between this check and the array's own bind after a
    /// restart; a process-wide counter keeps labs of one test run apart.
    pub fn free() -> Ports {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| {
                let mut w = t.split_whitespace().map(|x| x.parse::<u32>().ok());
                Some((w.next()??, w.next()??))
            })
            .unwrap_or((32768, 60999));
        // The widest span outside the ephemeral range, above 10000.
        let (from, span) = if low.saturating_sub(10_000) >= 65_535 - high {
            (10_000, low.saturating_sub(10_000).max(1))
        } else {
            (high + 1, (65_535 - high).max(1))
        };
        let start = std::process::id().wrapping_mul(7919) % span;
        let mut held = Vec::new();
        let mut next = || {
            for _ in 0..span {
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let port = (from + (start + n) % span) as u16;
                if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                    held.push(l);
                    return port;
                }
            }
            panic!("no free port in 127.0.0.1:{from}..{}", from + span);
        };
        let mut site = || SitePorts {
            http: next(),
            https: next(),
            nbd: next(),
            link: next(),
            switch: next(),
        };
        let (a, b) = (site(), site());
        Ports { a, b }
    }

    pub fn of(&self, s: Site) -> SitePorts {
        match s {
            Site::A => self.a,
            Site::B => self.b,
        }
    }
}

/// How to run a lab.
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    pub password: Option<String>,
    pub ports: Ports,
    /// The `replicim` binary the arrays run.
    pub exe: PathBuf,
    /// Link heartbeat and silence timeout (ms) of both arrays.
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    /// Volumes site-a creates at its first start: (name, MiB).
    pub volumes: Vec<(String, u64)>,
    /// The arrays dial each other directly instead of through the switch
    /// (benchmarks of the path a real deployment has; `link` and
    /// `throttle` then have no effect).
    pub direct_link: bool,
}

impl Options {
    pub fn new(dir: &Path, exe: &Path) -> Options {
        Options {
            dir: dir.to_path_buf(),
            password: None,
            ports: Ports::default(),
            exe: exe.to_path_buf(),
            heartbeat_ms: 500,
            timeout_ms: 3000,
            volumes: VOLUMES
                .iter()
                .map(|v| (v.to_string(), VOLUME_MIB))
                .collect(),
            direct_link: false,
        }
    }
}

/// The default lab directory: `$TMPDIR/replicim-lab`.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("replicim-lab")
}

/// A running lab.
pub struct Lab {
    pub opts: Options,
    pub password: String,
    children: Mutex<[Option<Child>; 2]>,
    pub switch: Arc<switch::Switch>,
    /// Runs the switch (and the control socket in the CLI).
    pub rt: tokio::runtime::Runtime,
}

impl Lab {
    /// Writes the configurations (reusing DIR's state), starts the switch
    /// and both arrays, and waits until both answer CIM-XML.
    pub fn start(opts: Options) -> Result<Lab, String> {
        crate::secure::private_dir(&opts.dir)?;
        let password = lab_password(&opts)?;
        // Each array's link identity, made here (as `serve` would at its
        // first start) so that each configuration pins the other's.
        let mut fingerprints = Vec::new();
        for s in [Site::A, Site::B] {
            let id = crate::link::tls::ensure_identity(&link_dir(&opts.dir, s), s.name())?;
            fingerprints.push(id.fingerprint());
            // Its CA and server certificate, and a client directory for the
            // hosts and consoles of the demo (NBD over TLS, HTTPS without
            // a password).
            let pki = crate::pki::ensure(&data_dir(&opts.dir, s).join("tls"), s.name(), s.name())?;
            let client = client_dir(&opts.dir, s);
            if !client.join("client-key.pem").exists() {
                crate::pki::issue_client(&pki, &client, "lab-client")?;
            }
        }
        for s in [Site::A, Site::B] {
            let path = config_path(&opts.dir, s);
            let peer_fp = &fingerprints[s.other().index()];
            crate::secure::write_private(&path, config_text(&opts, s, peer_fp).as_bytes())?;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let switch = Arc::new(switch::Switch::default());
        for s in [Site::A, Site::B] {
            let p = opts.ports.of(s);
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(("127.0.0.1", p.switch)))
                .map_err(|e| format!("switch port {}: {e}", p.switch))?;
            rt.spawn(switch::relay(
                listener,
                format!("127.0.0.1:{}", p.link),
                switch.clone(),
            ));
        }
        let lab = Lab {
            opts,
            password,
            children: Mutex::new([None, None]),
            switch,
            rt,
        };
        lab.start_site(Site::A)?;
        lab.start_site(Site::B)?;
        Ok(lab)
    }

    /// Starts an array's process from its data directory and waits until it
    /// answers CIM-XML.
    pub fn start_site(&self, s: Site) -> Result<(), String> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = children[s.index()].as_mut() {
            if c.try_wait().map_err(|e| e.to_string())?.is_none() {
                return Err(format!("{} is already running", s.name()));
            }
        }
        let log_path = self.opts.dir.join(format!("{}.log", s.name()));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Process::new(&self.opts.exe)
            .arg("serve")
            .arg("--config")
            .arg(config_path(&self.opts.dir, s))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.opts.exe.display()))?;
        children[s.index()] = Some(child);
        drop(children);
        self.wait_ready(s, Duration::from_secs(60))
    }

    fn wait_ready(&self, s: Site, limit: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.exited(s) {
                let log = self.opts.dir.join(format!("{}.log", s.name()));
                let text = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                return Err(format!(
                    "{} exited ({status}) while starting; the end of {}: {}",
                    s.name(),
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            if Console::connect(self.client(s)).is_ok() {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(format!("{} did not answer CIM-XML in {limit:?}", s.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&self, s: Site) -> Option<std::process::ExitStatus> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children[s.index()].as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILLs an array's process (an array failure) and reaps it.
    pub fn kill(&self, s: Site) -> Result<(), String> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut c) = children[s.index()].take() else {
            return Err(format!("{} is not running", s.name()));
        };
        if c.try_wait().map_err(|e| e.to_string())?.is_some() {
            return Err(format!("{} is not running", s.name()));
        }
        c.kill().map_err(|e| e.to_string())?;
        c.wait().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The process id of an array's process, while it runs.
    pub fn pid(&self, s: Site) -> Option<u32> {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children[s.index()].as_ref().map(|c| c.id())
    }

    /// Whether an array's process is alive.
    pub fn running(&self, s: Site) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children[s.index()]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Cuts (false) or restores (true) the link at the switch.
    pub fn link(&self, up: bool) {
        self.switch.set_up(up);
    }

    /// Limits the link to `rate` bytes per second in each direction (None:
    /// unlimited).
    pub fn throttle(&self, rate: Option<u64>) {
        self.switch.set_rate(rate);
    }

    /// A CIM-XML client of an array (HTTP, with the lab's credentials).
    pub fn client(&self, s: Site) -> Client {
        let addr = format!("127.0.0.1:{}", self.opts.ports.of(s).http);
        Client::new(&addr, Some((USER, &self.password)))
    }

    pub fn console(&self, s: Site) -> Result<Console, String> {
        Console::connect(self.client(s))
    }

    /// The NBD URL of a volume, as qemu writes it.
    pub fn nbd_url(&self, s: Site, vol: &str) -> String {
        format!("nbd://127.0.0.1:{}/{vol}", self.opts.ports.of(s).nbd)
    }

    /// Creates `rcg0` (synchronous) on site-a with vol0 and vol1 mirrored to
    /// site-b, starts it and waits until it is synced. A group that exists
    /// already (a lab run again on its directory) is restarted if it is
    /// stopped on its natural primary, else left as it is.
    pub fn provision(&self) -> Result<Provisioned, String> {
        self.wait_link(Site::A, true, Duration::from_secs(30))?;
        let mut c = self.console(Site::A)?;
        if let Some(g) = c.show()?.into_iter().find(|g| g.name == GROUP) {
            if g.role == "Primary" && g.status == "Stopped" {
                let cmd = crate::rcopy::parse(&["startrcopygroup", GROUP])?;
                c.run(&cmd, Wait::Yes, &mut |_, _| {})?;
                self.wait_synced(Site::A, Duration::from_secs(120))?;
                return Ok(Provisioned::Restarted);
            }
            return Ok(Provisioned::Reused(g.role, g.status));
        }
        let b = Site::B.name();
        let mut none = |_: u16, _: u64| {};
        let lines = [
            format!("creatercopygroup {GROUP} {b} sync"),
            format!("admitrcopyvv {} {GROUP} {b}:{}", VOLUMES[0], VOLUMES[0]),
            format!("admitrcopyvv {} {GROUP} {b}:{}", VOLUMES[1], VOLUMES[1]),
            format!("startrcopygroup {GROUP}"),
        ];
        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let cmd = crate::rcopy::parse(&words)?;
            c.run(&cmd, Wait::Yes, &mut none)
                .map_err(|e| format!("{line}: {e}"))?;
        }
        self.wait_synced(Site::A, Duration::from_secs(120))?;
        Ok(Provisioned::Created)
    }

    /// Waits until every pair of every group on `s` shows Synced.
    pub fn wait_synced(&self, s: Site, limit: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            let groups = self.console(s)?.show()?;
            let pending: Vec<String> = groups
                .iter()
                .flat_map(|g| g.volumes.iter())
                .filter(|v| v.sync_status != "Synced")
                .map(|v| format!("{} is {}", v.local_vv, v.sync_status))
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "{} not synced within {limit:?}: {}",
                    s.name(),
                    pending.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether `s` reports its link to the other array up, over CIM-XML
    /// (RCM_RemoteReplicationCollection.ConnectivityStatus 2).
    pub fn link_reported(&self, s: Site) -> Result<bool, String> {
        let peer = s.other().name();
        let links = self
            .client(s)
            .enumerate_instances(crate::provider::NS, "RCM_RemoteReplicationCollection")
            .map_err(|e| e.to_string())?;
        Ok(links.iter().any(|(_, i)| {
            i.get("ElementName").and_then(|v| v.as_str()) == Some(peer)
                && i.get("ConnectivityStatus") == Some(&crate::cim::model::Value::Uint16(2))
        }))
    }

    /// The link byte counters `s` exposes on RCM_ReplicationService:
    /// (WriteBytesSent, SyncBytesSent, BytesApplied).
    pub fn link_counters(&self, s: Site) -> Result<(u64, u64, u64), String> {
        let services = self
            .client(s)
            .enumerate_instances(crate::provider::NS, "RCM_ReplicationService")
            .map_err(|e| e.to_string())?;
        let (_, inst) = services
            .first()
            .ok_or_else(|| format!("{} has no RCM_ReplicationService", s.name()))?;
        let n = |k: &str| match inst.get(k) {
            Some(crate::cim::model::Value::Uint64(v)) => Ok(*v),
            other => Err(format!("{}: {k} is {other:?}", s.name())),
        };
        Ok((
            n("WriteBytesSent")?,
            n("SyncBytesSent")?,
            n("BytesApplied")?,
        ))
    }

    /// Waits until `s` reports its link `up` (or down).
    pub fn wait_link(&self, s: Site, up: bool, limit: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        while self.link_reported(s)? != up {
            if t0.elapsed() > limit {
                return Err(format!(
                    "{} did not see the link {} within {limit:?}",
                    s.name(),
                    if up { "up" } else { "down" }
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops both arrays with SIGTERM (a clean shutdown) and waits.
    pub fn stop(&self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for c in children.iter_mut().flatten() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) with our own child's pid and a valid signal.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        for c in children.iter_mut() {
            if let Some(mut ch) = c.take() {
                let t0 = Instant::now();
                while matches!(ch.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
    }

    /// The text the supervisor prints once the lab is up. Its commands
    /// carry no secret on their command lines (a process list shows those
    /// to every user): passwords come from the environment, certificates
    /// from files.
    pub fn banner(&self) -> String {
        let mut out = String::new();
        for s in [Site::A, Site::B] {
            let p = self.opts.ports.of(s);
            out += &format!(
                "{} ({}): CIM-XML http://127.0.0.1:{}  https://127.0.0.1:{}  NBD nbd://127.0.0.1:{}/vol0 and /vol1 (TLS offered)\n",
                if s == Site::A { "A" } else { "B" },
                s.name(),
                p.http,
                p.https,
                p.nbd
            );
        }
        let a = self.opts.ports.a;
        let b = self.opts.ports.b;
        let dir = self.opts.dir.display();
        let ca = client_dir(&self.opts.dir, Site::A);
        let ca = ca.display();
        out += &format!(
            "credentials: user {USER}, password in {dir}/password (mode 0600)\n\
             client certificates: {dir}/clients/site-a and site-b (NBD over TLS, HTTPS without a password)\n\
             namespaces: root/cimv2, interop root/interop\n\
             group {GROUP}: synchronous, vol0 and vol1 ({VOLUME_MIB} MiB each), site-a -> site-b\n\
             \n\
             try:\n\
             \x20 export REPLICIM_PASSWORD=\"$(cat {dir}/password)\" PYWBEMCLI_PASSWORD=\"$(cat {dir}/password)\"\n\
             \x20 replicim rcopy --url http://127.0.0.1:{} showrcopy\n\
             \x20 replicim rcopy --url https://127.0.0.1:{} --client-dir {ca} showrcopy\n\
             \x20 pywbemcli -s http://127.0.0.1:{} -u {USER} -d root/cimv2 instance enumerate CIM_StorageSynchronized --di\n\
             \x20 wbemcli -cacert {ca}/ca-cert.pem -clientcert {ca}/client-cert.pem -clientkey {ca}/client-key.pem ein 'https://127.0.0.1:{}/root/cimv2:CIM_StorageVolume'\n\
             \x20 qemu-io -f raw nbd://127.0.0.1:{}/vol0 -c 'write -P 0xab 0 1M'\n\
             \x20 qemu-io --object tls-creds-x509,id=tls0,dir={ca},endpoint=client --image-opts driver=nbd,host=127.0.0.1,port={},export=vol0,tls-creds=tls0 -c 'read -P 0xab 0 1M'\n\
             \x20 qemu-io -f raw nbd://127.0.0.1:{}/vol0 -c 'read -P 0xab 0 1M'   (B, read-only)\n\
             \x20 replicim lab kill A --dir {dir}     (then: rcopy --url http://127.0.0.1:{} setrcopygroup failover {GROUP})\n\
             \x20 replicim lab start A --dir {dir}\n\
             \x20 replicim lab link down|up --dir {dir};  replicim lab link throttle 1000000|off --dir {dir}\n\
             logs: {dir}/site-a.log, {dir}/site-b.log\n\
             Ctrl-C stops both arrays.\n",
            a.http, a.https, a.http, a.https, a.nbd, a.nbd, b.nbd, b.http
        );
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_path(dir: &Path, s: Site) -> PathBuf {
    dir.join(format!("{}.toml", s.name()))
}

/// An array's data directory in the lab.
pub fn data_dir(dir: &Path, s: Site) -> PathBuf {
    dir.join(s.name())
}

/// A client certificate directory the array's CA issued (QEMU's
/// tls-creds-x509 layout): `DIR/clients/site-a`.
pub fn client_dir(dir: &Path, s: Site) -> PathBuf {
    dir.join("clients").join(s.name())
}

/// Where an array of the lab keeps its link identity.
pub fn link_dir(dir: &Path, s: Site) -> PathBuf {
    data_dir(dir, s).join("link")
}

/// The password: given, else the one in DIR/credentials, else a new one.
fn lab_password(opts: &Options) -> Result<String, String> {
    let path = opts.dir.join("credentials");
    let pw = match &opts.password {
        Some(p) => p.clone(),
        None => match fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .find_map(|l| l.strip_prefix("password="))
                .map(|p| p.trim().to_string())
                .ok_or_else(|| format!("{}: no password= line", path.display()))?,
            Err(_) => {
                let mut seed = [0u8; 12];
                fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
                    .map_err(|e| format!("/dev/urandom: {e}"))?;
                seed.iter().map(|b| format!("{b:02x}")).collect()
            }
        },
    };
    crate::secure::write_private(&path, format!("user={USER}\npassword={pw}\n").as_bytes())?;
    crate::secure::write_private(&opts.dir.join("password"), pw.as_bytes())?;
    Ok(pw)
}

fn config_text(opts: &Options, s: Site, peer_fingerprint: &str) -> String {
    let me = opts.ports.of(s);
    let peer = opts.ports.of(s.other());
    let dir = opts.dir.display();
    let mut t = format!(
        "# Written by `replicim lab`; rewritten at each lab start.\n\
         name = \"{name}\"\n\
         data_dir = \"{dir}/{name}\"\n\
         \n\
         [cim]\n\
         http = [\"127.0.0.1:{http}\"]\n\
         https = [\"127.0.0.1:{https}\"]\n\
         user = \"{USER}\"\n\
         password_file = \"{dir}/password\"\n\
         \n\
         [nbd]\n\
         listen = \"127.0.0.1:{nbd}\"\n\
         \n\
         [link]\n\
         listen = \"127.0.0.1:{link}\"\n\
         heartbeat_ms = {hb}\n\
         timeout_ms = {to}\n\
         \n\
         [[peer]]\n\
         name = \"{peer_name}\"\n\
         link = \"127.0.0.1:{peer_switch}\"\n\
         cim = \"127.0.0.1:{peer_http}\"\n\
         fingerprint = \"{peer_fingerprint}\"\n",
        name = s.name(),
        http = me.http,
        https = me.https,
        nbd = me.nbd,
        link = me.link,
        hb = opts.heartbeat_ms,
        to = opts.timeout_ms,
        peer_name = s.other().name(),
        peer_switch = if opts.direct_link {
            peer.link
        } else {
            peer.switch
        },
        peer_http = peer.http,
    );
    if s == Site::A {
        for (v, mib) in &opts.volumes {
            t += &format!("\n[[volume]]\nname = \"{v}\"\nsize_mib = {mib}\n");
        }
    }
    t
}

/// Whether something listens on a 127.0.0.1 port.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}
