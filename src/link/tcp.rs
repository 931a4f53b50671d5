//! The link over TCP: one connection per peer pair, dialled by the array
//! whose name sorts first and accepted by the other, redialled with
//! exponential backoff after it drops. Each connection runs a [`Session`];
//! this module only moves bytes, time and messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use super::{Event, Session, Timing};
use crate::core::{Msg, Tick};

/// Where the link listens and whom it talks to.
#[derive(Clone, Debug)]
pub struct Config {
    pub me: String,
    /// Peer name -> its link address.
    pub peers: BTreeMap<String, String>,
    pub timing: Timing,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// What the link reports to the array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    Up(String),
    Down(String, String),
    Message(String, Msg),
}

/// The array's side of the link: send messages, receive events.
pub struct Link {
    outboxes: BTreeMap<String, mpsc::UnboundedSender<Msg>>,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
}

impl Link {
    /// Queues a message for `peer`; it is sent while the link is up and
    /// dropped when it is down (the core resends what it needs after Hello).
    pub fn send(&self, peer: &str, msg: Msg) {
        if let Some(tx) = self.outboxes.get(peer) {
            let _ = tx.send(msg);
        }
    }
}

/// Starts the link on `listener`; it runs until the runtime stops.
pub fn start(cfg: Config, listener: TcpListener) -> Link {
    let (ev_tx, events) = mpsc::unbounded_channel();
    let epoch = Instant::now();
    let mut outboxes = BTreeMap::new();
    let mut inboxes = BTreeMap::new();
    for peer in cfg.peers.keys() {
        let (tx, rx) = mpsc::unbounded_channel();
        outboxes.insert(peer.clone(), tx);
        inboxes.insert(peer.clone(), Arc::new(Mutex::new(rx)));
    }
    let cfg = Arc::new(cfg);
    // Dial the peers whose names sort after ours.
    for (peer, addr) in cfg.peers.iter().filter(|(p, _)| **p > cfg.me) {
        let (cfg, ev_tx, outbox) = (cfg.clone(), ev_tx.clone(), inboxes[peer].clone());
        let (peer, addr) = (peer.clone(), addr.clone());
        tokio::spawn(async move {
            let mut backoff = cfg.backoff_min;
            loop {
                match TcpStream::connect(&addr).await {
                    Ok(s) => {
                        let now = tick(epoch);
                        let session = Session::dial(&cfg.me, &peer, cfg.timing, now);
                        if drive(s, session, &peer, epoch, &outbox, &ev_tx).await {
                            backoff = cfg.backoff_min;
                        }
                    }
                    Err(e) => tracing::debug!(%peer, "link: cannot reach {addr}: {e}"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.backoff_max);
            }
        });
    }
    // Accept the others.
    let accepted: Vec<String> = cfg.peers.keys().filter(|p| **p < cfg.me).cloned().collect();
    tokio::spawn(async move {
        loop {
            let Ok((s, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (cfg, ev_tx, inboxes, accepted) = (
                cfg.clone(),
                ev_tx.clone(),
                inboxes.clone(),
                accepted.clone(),
            );
            tokio::spawn(async move {
                let session = Session::accept(&cfg.me, &accepted, cfg.timing, tick(epoch));
                // The outbox is known once the handshake names the peer.
                let peer = format!("{from}");
                drive_accepted(s, session, &peer, epoch, &inboxes, &ev_tx).await;
            });
        }
    });
    Link { outboxes, events }
}

/// A link with no peers (an array that replicates nowhere).
pub fn idle() -> Link {
    let (_, events) = mpsc::unbounded_channel();
    Link {
        outboxes: BTreeMap::new(),
        events,
    }
}

fn tick(epoch: Instant) -> Tick {
    Tick(epoch.elapsed().as_millis() as u64)
}

async fn drive_accepted(
    s: TcpStream,
    session: Session,
    addr: &str,
    epoch: Instant,
    inboxes: &BTreeMap<String, Arc<Mutex<mpsc::UnboundedReceiver<Msg>>>>,
    ev_tx: &mpsc::UnboundedSender<LinkEvent>,
) {
    // Until the Hello arrives there is no outbox; drive with an empty one
    // that is swapped in by `drive` through the session's peer name.
    let (_tx, rx) = mpsc::unbounded_channel();
    let none = Arc::new(Mutex::new(rx));
    drive_inner(s, session, addr, epoch, ev_tx, |peer| {
        inboxes.get(peer).cloned().unwrap_or_else(|| none.clone())
    })
    .await;
}

async fn drive(
    s: TcpStream,
    session: Session,
    peer: &str,
    epoch: Instant,
    outbox: &Arc<Mutex<mpsc::UnboundedReceiver<Msg>>>,
    ev_tx: &mpsc::UnboundedSender<LinkEvent>,
) -> bool {
    drive_inner(s, session, peer, epoch, ev_tx, |_| outbox.clone()).await
}

/// Runs one connection until its session goes down; true if it was up.
/// What was queued for the peer and not sent is dropped with the
/// connection: the link loses what is in flight, never reorders it.
async fn drive_inner(
    s: TcpStream,
    session: Session,
    label: &str,
    epoch: Instant,
    ev_tx: &mpsc::UnboundedSender<LinkEvent>,
    outbox_of: impl Fn(&str) -> Arc<Mutex<mpsc::UnboundedReceiver<Msg>>>,
) -> bool {
    let mut used = None;
    let up = connection(s, session, label, epoch, ev_tx, |p| {
        let o = outbox_of(p);
        used = Some(o.clone());
        o
    })
    .await;
    if let Some(o) = used {
        let mut o = o.lock().await;
        while o.try_recv().is_ok() {}
    }
    up
}

async fn connection(
    mut s: TcpStream,
    mut session: Session,
    label: &str,
    epoch: Instant,
    ev_tx: &mpsc::UnboundedSender<LinkEvent>,
    mut outbox_of: impl FnMut(&str) -> Arc<Mutex<mpsc::UnboundedReceiver<Msg>>>,
) -> bool {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut was_up = false;
    let mut outbox: Option<Arc<Mutex<mpsc::UnboundedReceiver<Msg>>>> = None;
    loop {
        let out = session.take_output();
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            break;
        }
        let Some(deadline) = session.poll_timeout() else {
            break;
        };
        let wait = Duration::from_millis(deadline.0.saturating_sub(tick(epoch).0));
        let mut events = Vec::new();
        let ob = outbox.clone();
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let peer = session.peer().unwrap_or(label).to_string();
                    if was_up {
                        let _ = ev_tx.send(LinkEvent::Down(peer, "connection closed".into()));
                    }
                    return was_up;
                }
                Ok(n) => events = session.handle_input(&buf[..n], tick(epoch)),
            },
            _ = tokio::time::sleep(wait) => events = session.handle_timeout(tick(epoch)),
            m = async { match &ob { Some(o) => o.lock().await.recv().await, None => std::future::pending().await } } => {
                if let Some(m) = m {
                    let _ = session.send_message(m, tick(epoch));
                }
            }
        }
        for e in events {
            match e {
                Event::Up { peer } => {
                    was_up = true;
                    outbox = Some(outbox_of(&peer));
                    let _ = ev_tx.send(LinkEvent::Up(peer));
                }
                Event::Message(m) => {
                    let peer = session.peer().unwrap_or(label).to_string();
                    let _ = ev_tx.send(LinkEvent::Message(peer, m));
                }
                Event::Down(err) => {
                    let out = session.take_output();
                    let _ = s.write_all(&out).await;
                    let peer = session.peer().unwrap_or(label).to_string();
                    tracing::info!(%peer, "link down: {err}");
                    let _ = ev_tx.send(LinkEvent::Down(peer, err.to_string()));
                    return was_up;
                }
            }
        }
    }
    was_up
}
