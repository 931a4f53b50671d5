//! The link over TCP: one connection per peer pair, dialled by the array
//! whose name sorts first and accepted by the other, redialled with
//! exponential backoff after it drops. Each connection runs a [`Session`];
//! this module only moves bytes, time and messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use super::tls::LinkTls;
use super::{Event, Session, Timing};
use crate::core::{Msg, Tick};

/// Longest a connecting peer may take over its TLS handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Most handshakes under way at once on the listener (the rest wait, so
/// connections that never finish theirs cannot hold it).
const HANDSHAKES: usize = 16;

/// Where the link listens and whom it talks to.
#[derive(Clone, Debug)]
pub struct Config {
    pub me: String,
    /// Peer name -> its link address.
    pub peers: BTreeMap<String, String>,
    pub timing: Timing,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Mutual TLS with pinned peers; None only when the configuration
    /// turns authentication off (plain TCP, logged at every start).
    pub tls: Option<LinkTls>,
}

/// What the link reports to the array. `Up` names the session (one
/// connection's handshake); a message is sent on the session it names, so
/// what the array meant for a session that has ended never reaches the
/// peer on a newer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    Up(String, u64),
    Down(String, String),
    Message(String, Msg),
}

/// The array's side of the link: send messages, receive events.
pub struct Link {
    outboxes: BTreeMap<String, mpsc::UnboundedSender<(u64, Msg)>>,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    shared: Option<Arc<Shared>>,
}

impl Link {
    /// Queues a message for `peer` on session `sid`; it is sent while that
    /// session is up and dropped otherwise (the core resends what it needs
    /// after the next Hello).
    pub fn send(&self, peer: &str, sid: u64, msg: Msg) {
        if let Some(tx) = self.outboxes.get(peer) {
            let _ = tx.send((sid, msg));
        }
    }

    /// Ends session `sid` with `peer` (its peer sent something this array
    /// refuses): the array hears Down at once, the connection closes, and
    /// the dialing side connects again after its backoff.
    pub fn drop_session(&self, peer: &str, sid: u64, why: &str) {
        if let Some(sh) = &self.shared {
            sh.drop_session(peer, sid, why);
        }
    }
}

type Outbox = Arc<Mutex<mpsc::UnboundedReceiver<(u64, Msg)>>>;

/// Most queued messages framed into one socket write.
const BATCH_FRAMES: usize = 256;

/// What every connection task of one link shares.
struct Shared {
    me: String,
    timing: super::Timing,
    epoch: Instant,
    sink: Sink,
    outboxes: BTreeMap<String, Outbox>,
    /// Per peer: the connection that is up now (by number). A peer that
    /// restarts can dial again before this side has noticed the old
    /// connection die; the new one then replaces it: this side reports
    /// Down then Up, in that order, and the old task ends silently without
    /// touching the outbox.
    live: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Bumped whenever a connection replaces another.
    replaced: tokio::sync::watch::Sender<u64>,
    next: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn emit(&self, e: LinkEvent) {
        (self.sink)(e)
    }

    fn now(&self) -> Tick {
        tick(self.epoch)
    }

    /// Connection `id` is up with `peer`: it becomes the live one.
    fn up(&self, peer: &str, id: u64) -> Option<Outbox> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.insert(peer.to_string(), id).is_some() {
            let why = "replaced by a new connection from the peer";
            tracing::info!(%peer, "link down: {why}");
            self.emit(LinkEvent::Down(peer.to_string(), why.into()));
            self.replaced.send_modify(|n| *n += 1);
        }
        self.emit(LinkEvent::Up(peer.to_string(), id));
        self.outboxes.get(peer).cloned()
    }

    fn is_live(&self, peer: &str, id: u64) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(peer) == Some(&id)
    }

    /// A message that arrived on connection `id`, passed on only while it
    /// is the live one (checked under the same lock that replaces it, so
    /// nothing read on an old connection follows a newer Up).
    fn message(&self, peer: &str, id: u64, m: Msg) {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.get(peer) == Some(&id) {
            self.emit(LinkEvent::Message(peer.to_string(), m));
        }
    }

    /// The array ends session `id` with `peer`.
    fn drop_session(&self, peer: &str, id: u64, why: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.get(peer) != Some(&id) {
            return;
        }
        live.remove(peer);
        tracing::warn!(%peer, "link down: session dropped by this array: {why}");
        self.emit(LinkEvent::Down(
            peer.to_string(),
            format!("session dropped: {why}"),
        ));
        self.replaced.send_modify(|n| *n += 1);
    }

    /// Connection `id` with `peer` ended: if it was the live one, the link
    /// is down and what was queued for it is dropped.
    async fn down(&self, peer: &str, id: u64, why: &str) {
        {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.get(peer) != Some(&id) {
                return;
            }
            live.remove(peer);
            self.emit(LinkEvent::Down(peer.to_string(), why.into()));
        }
        if let Some(o) = self.outboxes.get(peer) {
            let mut o = o.lock().await;
            while o.try_recv().is_ok() {}
        }
    }
}

/// Where the link delivers its events, from its own tasks.
pub type Sink = Arc<dyn Fn(LinkEvent) + Send + Sync>;

/// Starts the link on `listener`, its events in [`Link::events`]; it runs
/// until the runtime stops.
pub fn start(cfg: Config, listener: TcpListener) -> Link {
    let (ev_tx, events) = mpsc::unbounded_channel();
    let mut link = start_with(
        cfg,
        listener,
        Arc::new(move |e| {
            let _ = ev_tx.send(e);
        }),
    );
    link.events = events;
    link
}

/// Starts the link on `listener`, handing each event to `sink` as it
/// happens (an array's loop takes them straight into its input queue).
pub fn start_with(cfg: Config, listener: TcpListener, sink: Sink) -> Link {
    let (_, events) = mpsc::unbounded_channel();
    let mut outboxes = BTreeMap::new();
    let mut inboxes = BTreeMap::new();
    for peer in cfg.peers.keys() {
        let (tx, rx) = mpsc::unbounded_channel();
        outboxes.insert(peer.clone(), tx);
        inboxes.insert(peer.clone(), Arc::new(Mutex::new(rx)));
    }
    let shared = Arc::new(Shared {
        me: cfg.me.clone(),
        timing: cfg.timing,
        epoch: Instant::now(),
        sink,
        outboxes: inboxes,
        live: std::sync::Mutex::new(BTreeMap::new()),
        replaced: tokio::sync::watch::channel(0).0,
        next: std::sync::atomic::AtomicU64::new(1),
    });
    // Dial the peers whose names sort after ours.
    for (peer, addr) in cfg.peers.iter().filter(|(p, _)| **p > cfg.me) {
        let shared = shared.clone();
        let (peer, addr) = (peer.clone(), addr.clone());
        let (min, max) = (cfg.backoff_min, cfg.backoff_max);
        let connector = match &cfg.tls {
            Some(t) => match t.client(&peer) {
                Ok(c) => Some(tokio_rustls::TlsConnector::from(c)),
                Err(e) => {
                    tracing::error!(%peer, "link: no TLS configuration: {e}");
                    continue;
                }
            },
            None => None,
        };
        tokio::spawn(async move {
            let mut backoff = min;
            loop {
                match TcpStream::connect(&addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        let session = Session::dial(&shared.me, &peer, shared.timing, shared.now());
                        let up = match &connector {
                            None => connection(s, session, &peer, true, &shared).await,
                            Some(c) => {
                                let name = rustls::pki_types::ServerName::try_from("replicim-link")
                                    .expect("a valid name");
                                match tokio::time::timeout(HANDSHAKE_LIMIT, c.connect(name, s))
                                    .await
                                {
                                    Ok(Ok(t)) => connection(t, session, &peer, true, &shared).await,
                                    Ok(Err(e)) => {
                                        let why = format!("TLS with {addr} failed: {e}");
                                        tracing::warn!(%peer, "link refused: {why}");
                                        shared.emit(LinkEvent::Down(peer.clone(), why));
                                        false
                                    }
                                    Err(_) => {
                                        let why = format!("no TLS handshake with {addr} within {HANDSHAKE_LIMIT:?}");
                                        tracing::warn!(%peer, "link refused: {why}");
                                        shared.emit(LinkEvent::Down(peer.clone(), why));
                                        false
                                    }
                                }
                            }
                        };
                        if up {
                            backoff = min;
                        }
                    }
                    Err(e) => tracing::debug!(%peer, "link: cannot reach {addr}: {e}"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
        });
    }
    // Accept the others.
    let accepted: Vec<String> = cfg.peers.keys().filter(|p| **p < cfg.me).cloned().collect();
    let acceptor = shared.clone();
    let tls = cfg.tls.clone();
    let server = match &cfg.tls {
        Some(t) => match t.server() {
            Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
            Err(e) => {
                tracing::error!("link: no TLS configuration, accepting no peer: {e}");
                None
            }
        },
        None => None,
    };
    let refuse_all = cfg.tls.is_some() && server.is_none();
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
    tokio::spawn(async move {
        let shared = acceptor;
        loop {
            let Ok((s, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if refuse_all {
                continue;
            }
            let _ = s.set_nodelay(true);
            let (shared, accepted) = (shared.clone(), accepted.clone());
            let (server, tls, handshakes) = (server.clone(), tls.clone(), handshakes.clone());
            tokio::spawn(async move {
                match (server, tls) {
                    (Some(server), Some(tls)) => {
                        let Ok(permit) = handshakes.acquire_owned().await else {
                            return;
                        };
                        let t = match tokio::time::timeout(HANDSHAKE_LIMIT, server.accept(s)).await
                        {
                            Ok(Ok(t)) => t,
                            Ok(Err(e)) => {
                                tracing::warn!("link: refused a connection from {from}: TLS: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!("link: refused a connection from {from}: no TLS handshake within {HANDSHAKE_LIMIT:?}");
                                return;
                            }
                        };
                        drop(permit);
                        // The certificate says which peer this is; its Hello
                        // must name that peer and no other.
                        let peer = t
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| tls.peer_of(c));
                        let Some(peer) = peer.filter(|p| accepted.contains(p)) else {
                            tracing::warn!("link: refused a connection from {from}: its certificate is no accepting peer's");
                            return;
                        };
                        let session =
                            Session::accept(&shared.me, &[peer], shared.timing, shared.now());
                        connection(t, session, &format!("{from}"), false, &shared).await;
                    }
                    _ => {
                        let session =
                            Session::accept(&shared.me, &accepted, shared.timing, shared.now());
                        // The peer is known once the handshake names it.
                        connection(s, session, &format!("{from}"), false, &shared).await;
                    }
                }
            });
        }
    });
    Link {
        outboxes,
        events,
        shared: Some(shared),
    }
}

/// A link with no peers (an array that replicates nowhere).
pub fn idle() -> Link {
    let (_, events) = mpsc::unbounded_channel();
    Link {
        outboxes: BTreeMap::new(),
        events,
        shared: None,
    }
}

/// Frames a message meant for session `sid` on connection `id`; one meant
/// for another (older) session is dropped, as the link drops everything in
/// flight when a connection ends.
fn send_for(session: &mut Session, id: u64, (sid, m): (u64, Msg), sh: &Shared) {
    if sid != id {
        return;
    }
    if let Err(e) = session.send_message(m, sh.now()) {
        tracing::error!("link: a message was not sent: {e}");
    }
}

fn tick(epoch: Instant) -> Tick {
    Tick(epoch.elapsed().as_millis() as u64)
}

/// Runs one connection until its session goes down or a newer connection
/// with the same peer replaces it; true if it was up. What was queued for
/// the peer and not sent is dropped with the connection: the link loses
/// what is in flight, never reorders it.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    mut session: Session,
    label: &str,
    dialed: bool,
    sh: &Shared,
) -> bool {
    let id = sh.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut replaced = sh.replaced.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    let mut up: Option<String> = None;
    let mut outbox: Option<Outbox> = None;
    // The session's own verdict (a refusal, a timeout), as opposed to the
    // socket closing.
    let mut verdict = false;
    let why = loop {
        let out = session.take_output();
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            break "write failed".to_string();
        }
        let Some(deadline) = session.poll_timeout() else {
            break "session closed".to_string();
        };
        let wait = Duration::from_millis(deadline.0.saturating_sub(sh.now().0));
        let mut events = Vec::new();
        let ob = outbox.clone();
        tokio::select! {
            biased;
            _ = replaced.changed() => {
                if let Some(p) = &up {
                    if !sh.is_live(p, id) {
                        // A newer connection took over, or the array
                        // dropped this session: close without a word.
                        return true;
                    }
                }
            }
            r = s.read(&mut buf) => match r {
                Ok(0) => break "connection closed".to_string(),
                // With TLS, a peer's refusal of our certificate arrives
                // here, as an alert read after the handshake.
                Err(e) => break format!("connection closed: {e}"),
                Ok(n) => events = session.handle_input(&buf[..n], sh.now()),
            },
            _ = tokio::time::sleep(wait) => events = session.handle_timeout(sh.now()),
            m = async { match &ob { Some(o) => o.lock().await.recv().await, None => std::future::pending().await } } => {
                if let Some(m) = m {
                    send_for(&mut session, id, m, sh);
                    // Take what else is queued, so one write carries many
                    // frames (a sync run queues a window of blocks at once).
                    if let Some(o) = &ob {
                        let mut o = o.lock().await;
                        for _ in 0..BATCH_FRAMES {
                            match o.try_recv() {
                                Ok(m) => send_for(&mut session, id, m, sh),
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
        }
        let mut down = None;
        for e in events {
            match e {
                Event::Up { peer } => {
                    outbox = sh.up(&peer, id);
                    up = Some(peer);
                }
                Event::Message(m) => {
                    let peer = session.peer().unwrap_or(label).to_string();
                    sh.message(&peer, id, m);
                }
                Event::Down(err) => {
                    let out = session.take_output();
                    let _ = s.write_all(&out).await;
                    down = Some(err.to_string());
                    verdict = true;
                    break;
                }
            }
        }
        if let Some(d) = down {
            break d;
        }
    };
    match &up {
        Some(peer) => {
            tracing::info!(%peer, "link down: {why}");
            sh.down(peer, id, &why).await;
            true
        }
        None => {
            if verdict || dialed {
                // Refused during the handshake (by the link protocol, or
                // by TLS on the peer's side): the array learns why.
                let peer = session.peer().unwrap_or(label).to_string();
                tracing::warn!(%peer, "link refused: {why}");
                sh.emit(LinkEvent::Down(peer, why));
            }
            false
        }
    }
}
