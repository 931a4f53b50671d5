//! The NBD server: fixed newstyle negotiation, then the transmission phase
//! with simple replies, one task per connection.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
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
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = 0x8000_0001;
const REP_ERR_INVALID: u32 = 0x8000_0003;
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

/// Serves `exports` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    exports: Arc<dyn Catalog>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
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
                let exports = exports.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, exports.as_ref()).await {
                        tracing::debug!(%peer, "nbd connection ended: {e}");
                    }
                });
            }
        }
    }
}

async fn serve(stream: TcpStream, exports: &dyn Catalog) -> Io {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    w.write_all(NBDMAGIC).await?;
    w.write_u64(IHAVEOPT).await?;
    w.write_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).await?;
    w.flush().await?;
    let client_flags = r.read_u32().await?;
    let no_zeroes = client_flags & CLIENT_NO_ZEROES != 0;
    let Some(dev) = negotiate(&mut r, &mut w, exports, no_zeroes).await? else {
        return Ok(());
    };
    transmit(&mut r, &mut w, dev.as_ref()).await
}

async fn opt_reply<W: AsyncWriteExt + Unpin>(w: &mut W, opt: u32, kind: u32, data: &[u8]) -> Io {
    w.write_u64(REPLY_MAGIC).await?;
    w.write_u32(opt).await?;
    w.write_u32(kind).await?;
    w.write_u32(data.len() as u32).await?;
    w.write_all(data).await
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

/// The option haggling; returns the device chosen by OPT_GO or
/// OPT_EXPORT_NAME, or None when the client aborted.
async fn negotiate<R, W>(
    r: &mut R,
    w: &mut W,
    exports: &dyn Catalog,
    no_zeroes: bool,
) -> std::io::Result<Option<Arc<dyn Device>>>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    loop {
        if r.read_u64().await? != IHAVEOPT {
            return Err(std::io::Error::other("option without IHAVEOPT"));
        }
        let opt = r.read_u32().await?;
        let len = r.read_u32().await?;
        if len > MAX_OPTION {
            return Err(std::io::Error::other(format!("option of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data).await?;
        match opt {
            OPT_ABORT => {
                opt_reply(w, opt, REP_ACK, &[]).await?;
                w.flush().await?;
                return Ok(None);
            }
            OPT_LIST => {
                for name in exports.names() {
                    let mut d = (name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    opt_reply(w, opt, REP_SERVER, &d).await?;
                }
                opt_reply(w, opt, REP_ACK, &[]).await?;
                w.flush().await?;
            }
            OPT_EXPORT_NAME => {
                // No reply on error is possible here: close.
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(dev) = exports.get(&name) else {
                    return Err(std::io::Error::other(format!("unknown export {name}")));
                };
                w.write_u64(dev.size()).await?;
                w.write_u16(flags_of(dev.as_ref())).await?;
                if !no_zeroes {
                    w.write_all(&[0u8; 124]).await?;
                }
                w.flush().await?;
                return Ok(Some(dev.clone()));
            }
            OPT_INFO | OPT_GO => {
                let name = (data.len() >= 4)
                    .then(|| u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")) as usize)
                    .filter(|n| 4 + n + 2 <= data.len())
                    .map(|n| String::from_utf8_lossy(&data[4..4 + n]).into_owned());
                let Some(name) = name else {
                    let msg = b"malformed OPT_INFO/OPT_GO";
                    opt_reply(w, opt, REP_ERR_INVALID, msg).await?;
                    w.flush().await?;
                    continue;
                };
                let Some(dev) = exports.get(&name) else {
                    let known = exports.names();
                    let msg = format!("no export named {name:?}; exports: {}", known.join(", "));
                    opt_reply(w, opt, REP_ERR_UNKNOWN, msg.as_bytes()).await?;
                    w.flush().await?;
                    continue;
                };
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&dev.size().to_be_bytes());
                info.extend_from_slice(&flags_of(dev.as_ref()).to_be_bytes());
                opt_reply(w, opt, REP_INFO, &info).await?;
                // Block sizes: any byte range works; 4 KiB is best.
                let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                for v in [1u32, 4096, MAX_REQUEST] {
                    bs.extend_from_slice(&v.to_be_bytes());
                }
                opt_reply(w, opt, REP_INFO, &bs).await?;
                opt_reply(w, opt, REP_ACK, &[]).await?;
                w.flush().await?;
                if opt == OPT_GO {
                    return Ok(Some(dev.clone()));
                }
            }
            other => {
                let msg = format!("option {other} is not supported");
                opt_reply(w, other, REP_ERR_UNSUP, msg.as_bytes()).await?;
                w.flush().await?;
            }
        }
    }
}

async fn simple_reply<W: AsyncWriteExt + Unpin>(w: &mut W, err: Option<Errno>, handle: u64) -> Io {
    w.write_u32(SIMPLE_REPLY_MAGIC).await?;
    w.write_u32(err.map_or(0, |e| e as u32)).await?;
    w.write_u64(handle).await
}

async fn transmit<R, W>(r: &mut R, w: &mut W, dev: &dyn Device) -> Io
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = Vec::new();
    loop {
        if r.read_u32().await? != REQUEST_MAGIC {
            return Err(std::io::Error::other("request without magic"));
        }
        let flags = r.read_u16().await?;
        let cmd = r.read_u16().await?;
        let handle = r.read_u64().await?;
        let offset = r.read_u64().await?;
        let len = r.read_u32().await?;
        let in_range = offset
            .checked_add(u64::from(len))
            .is_some_and(|end| end <= dev.size());
        match cmd {
            CMD_DISC => {
                w.flush().await?;
                return Ok(());
            }
            CMD_WRITE => {
                if len > MAX_REQUEST {
                    return Err(std::io::Error::other(format!("write of {len} bytes")));
                }
                buf.resize(len as usize, 0);
                r.read_exact(&mut buf).await?;
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
                simple_reply(w, res.err(), handle).await?;
            }
            CMD_READ => {
                if len > MAX_REQUEST || !in_range {
                    simple_reply(w, Some(Errno::Inval), handle).await?;
                } else {
                    buf.resize(len as usize, 0);
                    match blocking(|| dev.read(offset, &mut buf)) {
                        Ok(()) => {
                            simple_reply(w, None, handle).await?;
                            w.write_all(&buf).await?;
                        }
                        Err(e) => simple_reply(w, Some(e), handle).await?,
                    }
                }
            }
            CMD_FLUSH => simple_reply(w, blocking(|| dev.flush()).err(), handle).await?,
            CMD_TRIM => {
                let res = if in_range {
                    blocking(|| dev.trim(offset, u64::from(len)))
                } else {
                    Err(Errno::Inval)
                };
                simple_reply(w, res.err(), handle).await?;
            }
            _ => simple_reply(w, Some(Errno::Inval), handle).await?,
        }
        w.flush().await?;
    }
}
