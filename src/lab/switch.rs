//! The fault switch: a TCP relay on the path of the replication link.
//!
//! * Up: bytes are relayed both ways, limited to `rate` bytes per second per
//!   direction when a throttle is set.
//! * Down: every relayed connection goes silent — what arrives is read and
//!   dropped, nothing is delivered and nothing is closed, as when a cable is
//!   pulled. The arrays see the link die only through their own heartbeat
//!   timeouts. Connections made while down are accepted and kept silent.
//! * Back up: the silent connections are closed (their streams lost bytes,
//!   so they cannot carry on), and the arrays redial.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The switch's state, shared by every relayed connection.
pub struct Switch {
    up: AtomicBool,
    /// Bytes per second per direction; 0: unlimited.
    rate: AtomicU64,
    /// Bumped at every change of `up`; a connection silenced in an older
    /// epoch is closed when the link comes back.
    epoch: watch::Sender<u64>,
    /// Bytes delivered through the switch (both directions).
    pub delivered: AtomicU64,
    /// Bytes dropped while down.
    pub dropped: AtomicU64,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            up: AtomicBool::new(true),
            rate: AtomicU64::new(0),
            epoch: watch::channel(0).0,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Switch {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::SeqCst) != up {
            self.epoch.send_modify(|e| *e += 1);
            tracing::info!(up, "switch: link {}", if up { "up" } else { "down" });
        }
    }

    pub fn rate(&self) -> Option<u64> {
        match self.rate.load(Ordering::SeqCst) {
            0 => None,
            r => Some(r),
        }
    }

    pub fn set_rate(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Ordering::SeqCst);
    }
}

/// Accepts connections on `listener` and relays each to `target`.
pub async fn relay(listener: TcpListener, target: String, sw: Arc<Switch>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (target, sw) = (target.clone(), sw.clone());
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let mut epoch = sw.epoch.subscribe();
            if !sw.is_up() {
                // A dial while the cable is out: silence until it is back.
                silence(inbound, &sw, &mut epoch).await;
                return;
            }
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return; // the array behind is down: the dialer sees a close
            };
            let _ = outbound.set_nodelay(true);
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            let a = pump(ir, ow, sw.clone(), sw.epoch.subscribe());
            let b = pump(or, iw, sw.clone(), sw.epoch.subscribe());
            tokio::join!(a, b);
        });
    }
}

/// Holds a connection open, dropping what arrives, until the link is back.
async fn silence(mut s: TcpStream, sw: &Switch, epoch: &mut watch::Receiver<u64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => { sw.dropped.fetch_add(n as u64, Ordering::Relaxed); }
            },
            _ = epoch.changed() => if sw.is_up() { return },
        }
    }
}

/// One direction of a relayed connection.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    sw: Arc<Switch>,
    mut epoch: watch::Receiver<u64>,
) {
    let start = *epoch.borrow();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = epoch.changed() => {
                if sw.is_up() { break } // back up: this stream lost bytes
                continue;
            }
        };
        if !sw.is_up() || *epoch.borrow() != start {
            // Down (or it was down since this connection began): drop.
            if sw.is_up() {
                break;
            }
            sw.dropped.fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        // A throttled line delivers its bytes evenly, not a buffer's worth
        // in one burst after a long silence: 20 ms of the rate at a time.
        let mut sent = 0;
        while sent < n {
            let take = match sw.rate() {
                Some(rate) => {
                    let take = ((rate / 50) as usize).clamp(1, n - sent);
                    tokio::time::sleep(Duration::from_secs_f64(take as f64 / rate as f64)).await;
                    take
                }
                None => n - sent,
            };
            if w.write_all(&buf[sent..sent + take]).await.is_err() {
                break;
            }
            sent += take;
            sw.delivered.fetch_add(take as u64, Ordering::Relaxed);
        }
        if sent < n {
            break;
        }
    }
    // A pulled cable carries no FIN either: while down, the other end is
    // left to find out by itself.
    while !sw.is_up() {
        if epoch.changed().await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}
