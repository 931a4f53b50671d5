//! The replication link's protocol, sans-IO: frames on a byte stream, a
//! versioned handshake that names both arrays, heartbeats and the timeout
//! that declares the link down. The TCP driver (connect, reconnect with
//! backoff, feeding bytes in and out) is [`tcp`].
//!
//! A frame is `len: u32 BE | payload | crc32(payload): u32 BE`, where
//! `len` counts payload and checksum and the payload is a postcard-encoded
//! [`Frame`]. A core message travels in one frame, so each replicated block
//! is checksummed on its own.

pub mod tcp;
pub mod tls;

use serde::{Deserialize, Serialize};

use crate::core::{Msg, Tick};

/// Protocol version; a peer with another version is refused. 2: Hello in
/// parts with `complete`, RecoverReady as block ranges. 3: a group's Hello
/// carries its mode and policies. 4: the async mode, the congestion
/// bounds in the policies, `Probe`/`ProbeAck`.
pub const VERSION: u16 = 5;
/// Bytes a frame may hold (a 4 KiB block and its names fit easily).
pub const MAX_FRAME: usize = 1 << 20;
const MAGIC: &str = "replicim-link";

/// What travels in one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The dialer's first frame: who it is, and whom it wants.
    Hello {
        magic: String,
        version: u16,
        from: String,
        to: String,
    },
    /// The listener accepts.
    Welcome {
        version: u16,
        from: String,
    },
    /// The listener refuses; the connection closes after it.
    Refuse {
        reason: String,
    },
    Heartbeat,
    Message(Msg),
}

/// A broken stream or a refused peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame checksum mismatch (stored {stored:08x}, computed {computed:08x}): the data was damaged in transit")]
    Checksum { stored: u32, computed: u32 },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("peer refused the link: {0}")]
    Refused(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("no frame from {peer} for {ms} ms: link declared down")]
    Timeout { peer: String, ms: u64 },
}

/// Appends one encoded frame to `out`, or refuses one whose payload is
/// over [`MAX_FRAME`] (the peer's decoder would refuse it and drop the
/// connection, again and again): nothing is appended then.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), LinkError> {
    let payload = postcard::to_stdvec(frame).expect("frames always encode");
    if payload.len() > MAX_FRAME {
        return Err(LinkError::TooLarge(payload.len()));
    }
    let len = (payload.len() + 4) as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    Ok(())
}

/// Reassembles frames from the bytes a stream delivers, in any chunking.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, None when more bytes are needed. An error
    /// means the stream is unusable and must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, LinkError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME + 4 {
            return Err(LinkError::TooLarge(len));
        }
        if len < 4 {
            return Err(LinkError::Protocol(format!("frame length {len}")));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let payload = &self.buf[4..len];
        let stored = u32::from_be_bytes(self.buf[len..4 + len].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(payload);
        if stored != computed {
            return Err(LinkError::Checksum { stored, computed });
        }
        let frame = postcard::from_bytes(payload).map_err(|e| LinkError::Decode(e.to_string()))?;
        self.buf.drain(..4 + len);
        Ok(Some(frame))
    }
}

/// Timing of a session.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// A heartbeat goes out when nothing was sent for this long.
    pub heartbeat_ms: u64,
    /// The link is down when nothing arrived for this long.
    pub timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 500,
            timeout_ms: 3000,
        }
    }
}

/// What a session tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed with this peer.
    Up { peer: String },
    /// A core message from the peer.
    Message(Msg),
    /// The session is over; close the stream.
    Down(LinkError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Dialer: Hello sent, waiting for Welcome.
    Dialing,
    /// Listener: waiting for Hello.
    Listening,
    Up,
    Down,
}

/// One connection's protocol state: feed it bytes and time, send what it
/// gives back. No I/O, no clock.
pub struct Session {
    me: String,
    /// Dialer: the array it must reach. Listener: the arrays it accepts.
    peers: Vec<String>,
    peer: Option<String>,
    state: State,
    timing: Timing,
    decoder: Decoder,
    out: Vec<u8>,
    last_rx: Tick,
    last_tx: Tick,
}

impl Session {
    /// A connection we opened to `peer`.
    pub fn dial(me: &str, peer: &str, timing: Timing, now: Tick) -> Session {
        let mut s = Session::new(me, vec![peer.to_string()], State::Dialing, timing, now);
        // Names are bounded by the naming rule: this frame always fits.
        let _ = s.send(
            &Frame::Hello {
                magic: MAGIC.into(),
                version: VERSION,
                from: me.into(),
                to: peer.into(),
            },
            now,
        );
        s
    }

    /// A connection accepted from one of `peers`.
    pub fn accept(me: &str, peers: &[String], timing: Timing, now: Tick) -> Session {
        Session::new(me, peers.to_vec(), State::Listening, timing, now)
    }

    fn new(me: &str, peers: Vec<String>, state: State, timing: Timing, now: Tick) -> Session {
        Session {
            me: me.into(),
            peers,
            peer: None,
            state,
            timing,
            decoder: Decoder::default(),
            out: Vec::new(),
            last_rx: now,
            last_tx: now,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    fn send(&mut self, f: &Frame, now: Tick) -> Result<(), LinkError> {
        encode(f, &mut self.out)?;
        self.last_tx = now;
        Ok(())
    }

    /// Queues a core message; only once the session is up, and only one
    /// that fits in a frame.
    pub fn send_message(&mut self, msg: Msg, now: Tick) -> Result<(), LinkError> {
        if self.state != State::Up {
            return Err(LinkError::Protocol("the link is not up".into()));
        }
        self.send(&Frame::Message(msg), now)
    }

    /// Bytes to write to the stream.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn fail(&mut self, e: LinkError, events: &mut Vec<Event>) {
        self.state = State::Down;
        events.push(Event::Down(e));
    }

    /// Bytes read from the stream.
    pub fn handle_input(&mut self, bytes: &[u8], now: Tick) -> Vec<Event> {
        let mut events = Vec::new();
        if self.state == State::Down {
            return events;
        }
        self.last_rx = now;
        self.decoder.push(bytes);
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.fail(e, &mut events);
                    break;
                }
            };
            match (&self.state, frame) {
                (
                    State::Listening,
                    Frame::Hello {
                        magic,
                        version,
                        from,
                        to,
                    },
                ) => {
                    let why = if magic != MAGIC {
                        Some(format!("not a replicim link ({magic:?})"))
                    } else if version != VERSION {
                        Some(format!(
                            "protocol version {version} is not {VERSION}; upgrade the older array"
                        ))
                    } else if to != self.me {
                        Some(format!("this is {}, not {to}", self.me))
                    } else if !self.peers.contains(&from) {
                        Some(format!("{from} is not a configured peer of {}", self.me))
                    } else {
                        None
                    };
                    match why {
                        Some(reason) => {
                            let _ = self.send(
                                &Frame::Refuse {
                                    reason: crate::core::names::reason(reason.clone()),
                                },
                                now,
                            );
                            self.fail(LinkError::Refused(reason), &mut events);
                        }
                        None => {
                            let _ = self.send(
                                &Frame::Welcome {
                                    version: VERSION,
                                    from: self.me.clone(),
                                },
                                now,
                            );
                            self.state = State::Up;
                            self.peer = Some(from.clone());
                            events.push(Event::Up { peer: from });
                        }
                    }
                }
                (State::Dialing, Frame::Welcome { version, from }) => {
                    if version != VERSION || !self.peers.contains(&from) {
                        let e =
                            LinkError::Protocol(format!("welcome from {from} (version {version})"));
                        self.fail(e, &mut events);
                    } else {
                        self.state = State::Up;
                        self.peer = Some(from.clone());
                        events.push(Event::Up { peer: from });
                    }
                }
                (_, Frame::Refuse { reason }) => self.fail(LinkError::Refused(reason), &mut events),
                (State::Up, Frame::Heartbeat) => {}
                (State::Up, Frame::Message(m)) => events.push(Event::Message(m)),
                (_, other) => {
                    let e = LinkError::Protocol(format!(
                        "unexpected {} before the handshake",
                        frame_name(&other)
                    ));
                    self.fail(e, &mut events);
                }
            }
            if self.state == State::Down {
                break;
            }
        }
        events
    }

    /// When `handle_timeout` must next run.
    pub fn poll_timeout(&self) -> Option<Tick> {
        if self.state == State::Down {
            return None;
        }
        let dead = self.last_rx.plus(self.timing.timeout_ms);
        Some(if self.state == State::Up {
            dead.min(self.last_tx.plus(self.timing.heartbeat_ms))
        } else {
            dead
        })
    }

    pub fn handle_timeout(&mut self, now: Tick) -> Vec<Event> {
        let mut events = Vec::new();
        if self.state == State::Down {
            return events;
        }
        if now >= self.last_rx.plus(self.timing.timeout_ms) {
            let peer = self
                .peer
                .clone()
                .or_else(|| self.peers.first().cloned())
                .unwrap_or_default();
            self.fail(
                LinkError::Timeout {
                    peer,
                    ms: self.timing.timeout_ms,
                },
                &mut events,
            );
        } else if self.state == State::Up && now >= self.last_tx.plus(self.timing.heartbeat_ms) {
            let _ = self.send(&Frame::Heartbeat, now);
        }
        events
    }
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Welcome { .. } => "Welcome",
        Frame::Refuse { .. } => "Refuse",
        Frame::Heartbeat => "Heartbeat",
        Frame::Message(_) => "Message",
    }
}
