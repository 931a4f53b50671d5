//! The NBD server: fixed newstyle negotiation, then the transmission phase
//! with simple replies, one task per connection.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Catalog, Device, Errno};
use crate::rt::blocking;

const NBDMAGIC: &[u8; 8] = b"NBDMAGIC";
const IHAVEOPT: u64 = 0x4948_4156_454F_5054; // "IHAVEOPT"
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_STARTTLS: u32 = 5;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = 0x8000_0001;
const REP_ERR_INVALID: u32 = 0x8000_0003;
const REP_ERR_TLS_REQD: u32 = 0x8000_0005;
const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TF_HAS_FLAGS: u16 = 1;
const TF_READ_ONLY: u16 = 2;
const TF_SEND_FLUSH: u16 = 4;
const TF_SEND_FUA: u16 = 8;
const TF_SEND_TRIM: u16 = 32;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_FLAG_FUA: u16 = 1;

/// Largest option payload and request length accepted.
const MAX_OPTION: u32 = 64 * 1024;
const MAX_REQUEST: u32 = 32 * 1024 * 1024;

type Io = std::io::Result<()>;

/// Whether NBD offers TLS (NBD_OPT_STARTTLS) and whether it insists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// STARTTLS is answered as unsupported.
    Off,
    /// Offered; plaintext clients are served too.
    #[default]
    Optional,
    /// Every option but STARTTLS and ABORT is refused with
    /// NBD_REP_ERR_TLS_REQD until TLS is up.
    Required,
}

/// The server's policy and limits.
#[derive(Clone)]
pub struct Config {
    pub tls: TlsMode,
    /// Needed unless `tls` is Off.
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub max_connections: usize,
    pub per_addr: usize,
    /// Time to finish the option haggling (TLS handshake included).
    pub handshake_timeout: std::time::Duration,
    /// Options accepted before the client must choose an export.
    pub max_options: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tls: TlsMode::Off,
            acceptor: None,
            max_connections: 256,
            per_addr: 64,
            handshake_timeout: std::time::Duration::from_secs(10),
            max_options: 256,
        }
    }
}

/// Serves `exports` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    exports: Arc<dyn Catalog>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    if config.tls != TlsMode::Off && config.acceptor.is_none() {
        return Err(std::io::Error::other(
            "NBD TLS is on but no certificate was given",
        ));
    }
    let config = Arc::new(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let guard = crate::guard::Guard::new(crate::guard::Limits {
        per_addr: config.per_addr,
        ..crate::guard::Limits::default()
    });
    let mut full_logged = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("nbd: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if !full_logged {
                        tracing::warn!(limit = config.max_connections, "nbd: refusing connections: the server holds its limit");
                        full_logged = true;
                    }
                    continue;
                };
                full_logged = false;
                let Some(slot) = guard.connect(peer.ip()) else {
                    continue;
                };
                let exports = exports.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    let _held = (permit, slot);
                    if let Err(e) = serve(stream, exports.as_ref(), &config).await {
                        tracing::info!(%peer, "nbd: connection ended: {e}");
                    }
                });
            }
        }
    }
}

/// How an option haggle ended.
enum Outcome {
    Go(Arc<dyn Device>),
    Abort,
    StartTls,
}

async fn serve(mut stream: TcpStream, exports: &dyn Catalog, cfg: &Config) -> Io {
    stream.set_nodelay(true)?;
    let deadline = tokio::time::Instant::now() + cfg.handshake_timeout;
    let late = || std::io::Error::other("the client did not finish the handshake in time");
    let mut hello = NBDMAGIC.to_vec();
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    let first = async {
        stream.write_all(&hello).await?;
        let flags = stream.read_u32().await?;
        let no_zeroes = flags & CLIENT_NO_ZEROES != 0;
        let outcome = negotiate(&mut stream, exports, no_zeroes, cfg, false).await?;
        Ok::<_, std::io::Error>((outcome, no_zeroes))
    };
    let (outcome, no_zeroes) = tokio::time::timeout_at(deadline, first)
        .await
        .map_err(|_| late())??;
    match outcome {
        Outcome::Abort => Ok(()),
        Outcome::Go(dev) => transmit(tokio::io::BufStream::new(stream), dev.as_ref()).await,
        Outcome::StartTls => {
            let acceptor = cfg
                .acceptor
                .clone()
                .expect("STARTTLS is acked only with TLS on");
            let secured = async {
                let mut tls = acceptor
                    .accept(stream)
                    .await
                    .map_err(|e| std::io::Error::other(format!("TLS handshake failed: {e}")))?;
                let outcome = negotiate(&mut tls, exports, no_zeroes, cfg, true).await?;
                Ok::<_, std::io::Error>((tls, outcome))
            };
            let (tls, outcome) = tokio::time::timeout_at(deadline, secured)
                .await
                .map_err(|_| late())??;
            match outcome {
                Outcome::Go(dev) => transmit(tokio::io::BufStream::new(tls), dev.as_ref()).await,
                Outcome::Abort | Outcome::StartTls => Ok(()),
            }
        }
    }
}

fn opt_reply(out: &mut Vec<u8>, opt: u32, kind: u32, data: &[u8]) {
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&opt.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

fn flags_of(dev: &dyn Device) -> u16 {
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA;
    if dev.read_only() {
        f |= TF_READ_ONLY;
    } else {
        f |= TF_SEND_TRIM;
    }
    f
}

/// The option haggling, in clear (`secure` false) or inside TLS.
async fn negotiate<S>(
    s: &mut S,
    exports: &dyn Catalog,
    no_zeroes: bool,
    cfg: &Config,
    secure: bool,
) -> std::io::Result<Outcome>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let tls_needed = cfg.tls == TlsMode::Required && !secure;
    for _ in 0..cfg.max_options {
        if s.read_u64().await? != IHAVEOPT {
            return Err(std::io::Error::other("option without IHAVEOPT"));
        }
        let opt = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPTION {
            return Err(std::io::Error::other(format!("option of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        let mut out = Vec::new();
        let outcome = match opt {
            OPT_ABORT => {
                opt_reply(&mut out, opt, REP_ACK, &[]);
                Some(Outcome::Abort)
            }
            OPT_STARTTLS => {
                if secure {
                    opt_reply(&mut out, opt, REP_ERR_INVALID, b"TLS is already on");
                    None
                } else if cfg.tls == TlsMode::Off {
                    opt_reply(
                        &mut out,
                        opt,
                        REP_ERR_UNSUP,
                        b"TLS is off on this array ([nbd] tls)",
                    );
                    None
                } else if !data.is_empty() {
                    opt_reply(&mut out, opt, REP_ERR_INVALID, b"STARTTLS carries no data");
                    None
                } else {
                    opt_reply(&mut out, opt, REP_ACK, &[]);
                    Some(Outcome::StartTls)
                }
            }
            OPT_EXPORT_NAME if tls_needed => {
                // This option has no error reply: the session ends.
                return Err(std::io::Error::other(
                    "refused a plaintext NBD_OPT_EXPORT_NAME: this array requires TLS",
                ));
            }
            _ if tls_needed => {
                tracing::info!("nbd: refused option {opt} before TLS: this array requires TLS");
                opt_reply(
                    &mut out,
                    opt,
                    REP_ERR_TLS_REQD,
                    b"this array requires TLS: start it with NBD_OPT_STARTTLS",
                );
                None
            }
            OPT_LIST => {
                for name in exports.names() {
                    let mut d = (name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    opt_reply(&mut out, opt, REP_SERVER, &d);
                }
                opt_reply(&mut out, opt, REP_ACK, &[]);
                None
            }
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(dev) = exports.get(&name) else {
                    return Err(std::io::Error::other(format!("unknown export {name}")));
                };
                out.extend_from_slice(&dev.size().to_be_bytes());
                out.extend_from_slice(&flags_of(dev.as_ref()).to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                Some(Outcome::Go(dev))
            }
            OPT_INFO | OPT_GO => {
                let name = (data.len() >= 4)
                    .then(|| u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")) as usize)
                    .filter(|n| 4 + n + 2 <= data.len())
                    .map(|n| String::from_utf8_lossy(&data[4..4 + n]).into_owned());
                match name.map(|n| (exports.get(&n), n)) {
                    None => {
                        opt_reply(&mut out, opt, REP_ERR_INVALID, b"malformed OPT_INFO/OPT_GO");
                        None
                    }
                    Some((None, name)) => {
                        let known = exports.names();
                        let msg =
                            format!("no export named {name:?}; exports: {}", known.join(", "));
                        opt_reply(&mut out, opt, REP_ERR_UNKNOWN, msg.as_bytes());
                        None
                    }
                    Some((Some(dev), _)) => {
                        let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                        info.extend_from_slice(&dev.size().to_be_bytes());
                        info.extend_from_slice(&flags_of(dev.as_ref()).to_be_bytes());
                        opt_reply(&mut out, opt, REP_INFO, &info);
                        // Block sizes: any byte range works; 4 KiB is best.
                        let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                        for v in [1u32, 4096, MAX_REQUEST] {
                            bs.extend_from_slice(&v.to_be_bytes());
                        }
                        opt_reply(&mut out, opt, REP_INFO, &bs);
                        opt_reply(&mut out, opt, REP_ACK, &[]);
                        (opt == OPT_GO).then_some(Outcome::Go(dev))
                    }
                }
            }
            other => {
                let msg = format!("option {other} is not supported");
                opt_reply(&mut out, other, REP_ERR_UNSUP, msg.as_bytes());
                None
            }
        };
        s.write_all(&out).await?;
        s.flush().await?;
        if let Some(o) = outcome {
            return Ok(o);
        }
    }
    Err(std::io::Error::other(format!(
        "more than {} options without choosing an export",
        cfg.max_options
    )))
}

async fn simple_reply<W: AsyncWriteExt + Unpin>(w: &mut W, err: Option<Errno>, handle: u64) -> Io {
    w.write_u32(SIMPLE_REPLY_MAGIC).await?;
    w.write_u32(err.map_or(0, |e| e as u32)).await?;
    w.write_u64(handle).await
}

async fn transmit<S>(mut s: S, dev: &dyn Device) -> Io
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let mut buf = Vec::new();
    loop {
        if s.read_u32().await? != REQUEST_MAGIC {
            return Err(std::io::Error::other("request without magic"));
        }
        let flags = s.read_u16().await?;
        let cmd = s.read_u16().await?;
        let handle = s.read_u64().await?;
        let offset = s.read_u64().await?;
        let len = s.read_u32().await?;
        let in_range = offset
            .checked_add(u64::from(len))
            .is_some_and(|end| end <= dev.size());
        match cmd {
            CMD_DISC => {
                s.flush().await?;
                return Ok(());
            }
            CMD_WRITE => {
                if len > MAX_REQUEST {
                    return Err(std::io::Error::other(format!("write of {len} bytes")));
                }
                buf.resize(len as usize, 0);
                s.read_exact(&mut buf).await?;
                let res = if !in_range {
                    Err(Errno::NoSpc)
                } else {
                    blocking(|| {
                        dev.write(offset, &buf).and_then(|()| {
                            if flags & CMD_FLAG_FUA != 0 {
                                dev.flush()
                            } else {
                                Ok(())
                            }
                        })
                    })
                };
                simple_reply(&mut s, res.err(), handle).await?;
            }
            CMD_READ => {
                if len > MAX_REQUEST || !in_range {
                    simple_reply(&mut s, Some(Errno::Inval), handle).await?;
                } else {
                    buf.resize(len as usize, 0);
                    match blocking(|| dev.read(offset, &mut buf)) {
                        Ok(()) => {
                            simple_reply(&mut s, None, handle).await?;
                            s.write_all(&buf).await?;
                        }
                        Err(e) => simple_reply(&mut s, Some(e), handle).await?,
                    }
                }
            }
            CMD_FLUSH => simple_reply(&mut s, blocking(|| dev.flush()).err(), handle).await?,
            CMD_TRIM => {
                let res = if in_range {
                    blocking(|| dev.trim(offset, u64::from(len)))
                } else {
                    Err(Errno::Inval)
                };
                simple_reply(&mut s, res.err(), handle).await?;
            }
            _ => simple_reply(&mut s, Some(Errno::Inval), handle).await?,
        }
        s.flush().await?;
    }
}
