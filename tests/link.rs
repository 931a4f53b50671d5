//! The replication link protocol: frames survive any chunking, damage is
//! caught by the checksum, the handshake accepts only configured peers,
//! and silence brings the link down. One run goes over a real socket.

use replicim::core::{DataTag, Msg, Tick, BLOCK_SIZE};
use replicim::link::{
    encode, Decoder, Event, Frame, LinkError, Session, Timing, MAX_FRAME, VERSION,
};
use replicim::sim::pattern_block;

fn data_msg() -> Msg {
    Msg::Data {
        group: "rcg0".into(),
        vol: "vol0".into(),
        block: 42,
        data: Box::new(pattern_block(0xa5, 7)),
        tag: DataTag::Sync,
    }
}

#[test]
fn frames_decode_from_any_chunking() {
    let frames = vec![
        Frame::Heartbeat,
        Frame::Message(data_msg()),
        Frame::Message(Msg::Stop {
            group: "rcg0".into(),
        }),
    ];
    let mut bytes = Vec::new();
    for f in &frames {
        encode(f, &mut bytes).unwrap();
    }
    // A 4 KiB block costs little more than itself on the wire.
    let mut one = Vec::new();
    encode(&Frame::Message(data_msg()), &mut one).unwrap();
    assert!(one.len() < BLOCK_SIZE + 40, "{} bytes", one.len());
    for chunk in [1, 3, 1000, bytes.len()] {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for c in bytes.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames, "chunk size {chunk}");
    }
}

#[test]
fn a_damaged_block_is_caught_by_the_checksum() {
    let mut bytes = Vec::new();
    encode(&Frame::Message(data_msg()), &mut bytes).unwrap();
    bytes[2000] ^= 0x01;
    let mut d = Decoder::default();
    d.push(&bytes);
    assert!(matches!(d.next_frame(), Err(LinkError::Checksum { .. })));
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_buffered() {
    let mut d = Decoder::default();
    d.push(&((MAX_FRAME as u32) + 100).to_be_bytes());
    assert!(matches!(d.next_frame(), Err(LinkError::TooLarge(_))));
}

/// Moves bytes between two sessions until neither has anything to send.
fn pump(a: &mut Session, b: &mut Session, now: Tick) -> (Vec<Event>, Vec<Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    loop {
        let (oa, ob) = (a.take_output(), b.take_output());
        if oa.is_empty() && ob.is_empty() {
            return (ea, eb);
        }
        eb.extend(b.handle_input(&oa, now));
        ea.extend(a.handle_input(&ob, now));
    }
}

fn up(ev: &[Event], peer: &str) -> bool {
    ev.iter()
        .any(|e| matches!(e, Event::Up { peer: p } if p == peer))
}

#[test]
fn handshake_names_both_arrays_then_messages_flow() {
    let t = Tick(0);
    let mut a = Session::dial("site-a", "site-b", Timing::default(), t);
    let mut b = Session::accept("site-b", &["site-a".into()], Timing::default(), t);
    let (ea, eb) = pump(&mut a, &mut b, t);
    assert!(up(&ea, "site-b") && up(&eb, "site-a"), "{ea:?} {eb:?}");
    a.send_message(data_msg(), t).unwrap();
    let (_, eb) = pump(&mut a, &mut b, t);
    assert_eq!(eb, vec![Event::Message(data_msg())]);
}

fn refused(a_to: &str, b_accepts: &str, hello: Option<Frame>) -> (Vec<Event>, Vec<Event>) {
    let t = Tick(0);
    let mut a = Session::dial("site-a", a_to, Timing::default(), t);
    let mut b = Session::accept("site-b", &[b_accepts.to_string()], Timing::default(), t);
    if let Some(h) = hello {
        a.take_output();
        let mut bytes = Vec::new();
        encode(&h, &mut bytes).unwrap();
        let eb = b.handle_input(&bytes, t);
        let ea = a.handle_input(&b.take_output(), t);
        return (ea, eb);
    }
    pump(&mut a, &mut b, t)
}

fn refusal(ev: &[Event]) -> String {
    ev.iter()
        .find_map(|e| match e {
            Event::Down(LinkError::Refused(r)) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal in {ev:?}"))
}

#[test]
fn unknown_or_mistaken_peers_are_refused_with_a_reason() {
    let (ea, eb) = refused("site-b", "site-c", None);
    assert!(
        refusal(&ea).contains("site-a is not a configured peer of site-b"),
        "{ea:?}"
    );
    assert!(refusal(&eb).contains("not a configured peer"), "{eb:?}");
    let (ea, _) = refused("site-z", "site-a", None);
    assert!(
        refusal(&ea).contains("this is site-b, not site-z"),
        "{ea:?}"
    );
    let old = Frame::Hello {
        magic: "replicim-link".into(),
        version: VERSION + 1,
        from: "site-a".into(),
        to: "site-b".into(),
    };
    let (ea, _) = refused("site-b", "site-a", Some(old));
    assert!(refusal(&ea).contains("protocol version"), "{ea:?}");
    let alien = Frame::Hello {
        magic: "http".into(),
        version: VERSION,
        from: "site-a".into(),
        to: "site-b".into(),
    };
    let (ea, _) = refused("site-b", "site-a", Some(alien));
    assert!(refusal(&ea).contains("not a replicim link"), "{ea:?}");
}

#[test]
fn no_message_before_the_handshake() {
    let mut b = Session::accept("site-b", &["site-a".into()], Timing::default(), Tick(0));
    let mut bytes = Vec::new();
    encode(&Frame::Message(data_msg()), &mut bytes).unwrap();
    let ev = b.handle_input(&bytes, Tick(0));
    assert!(
        matches!(&ev[..], [Event::Down(LinkError::Protocol(m))] if m.contains("before the handshake")),
        "{ev:?}"
    );
    assert!(
        b.take_output().is_empty(),
        "data answered before the handshake"
    );
}

#[test]
fn heartbeats_keep_a_quiet_link_up_and_silence_brings_it_down() {
    let timing = Timing {
        heartbeat_ms: 100,
        timeout_ms: 350,
    };
    let mut a = Session::dial("site-a", "site-b", timing, Tick(0));
    let mut b = Session::accept("site-b", &["site-a".into()], timing, Tick(0));
    pump(&mut a, &mut b, Tick(0));
    // Both sides heartbeat; each hears the other, so nothing goes down.
    let mut now = Tick(0);
    for _ in 0..20 {
        now = a.poll_timeout().unwrap().min(b.poll_timeout().unwrap());
        assert!(a.handle_timeout(now).is_empty() && b.handle_timeout(now).is_empty());
        let (ea, eb) = pump(&mut a, &mut b, now);
        assert!(ea.is_empty() && eb.is_empty());
    }
    assert!(now.0 >= 1000 && a.is_up() && b.is_up());
    // Now B goes silent: A declares the link down after the timeout.
    let silent_from = now;
    loop {
        now = a.poll_timeout().unwrap();
        let ev = a.handle_timeout(now);
        a.take_output();
        if let Some(Event::Down(e)) = ev.first() {
            assert!(
                matches!(e, LinkError::Timeout { peer, ms: 350 } if peer == "site-b"),
                "{e}"
            );
            assert_eq!(now.0 - silent_from.0, 350);
            break;
        }
    }
    assert!(!a.is_up() && a.poll_timeout().is_none());
}

/// The same handshake and a block over a real TCP connection on loopback.
#[test]
fn a_block_crosses_a_real_socket_intact() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = Session::accept("site-b", &["site-a".into()], Timing::default(), Tick(0));
        let mut buf = [0u8; 8192];
        let mut got = Vec::new();
        while got.iter().all(|e| !matches!(e, Event::Message(_))) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "dialer hung up early");
            got.extend(b.handle_input(&buf[..n], Tick(0)));
            s.write_all(&b.take_output()).unwrap();
        }
        got
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut a = Session::dial("site-a", "site-b", Timing::default(), Tick(0));
    s.write_all(&a.take_output()).unwrap();
    let mut buf = [0u8; 1024];
    while !a.is_up() {
        let n = s.read(&mut buf).unwrap();
        a.handle_input(&buf[..n], Tick(0));
    }
    a.send_message(data_msg(), Tick(0)).unwrap();
    s.write_all(&a.take_output()).unwrap();
    let got = server.join().unwrap();
    assert_eq!(
        got,
        vec![
            Event::Up {
                peer: "site-a".into()
            },
            Event::Message(data_msg())
        ]
    );
}

mod tcp {
    use super::data_msg;
    use replicim::core::Msg;
    use replicim::link::tcp::{self, Config, LinkEvent};
    use replicim::link::Timing;
    use std::collections::BTreeMap;
    use std::sync::mpsc as smpsc;
    use std::time::Duration;

    /// The link identities of the test arrays, made once per test run.
    fn identity(name: &str) -> replicim::link::tls::Identity {
        type Ids = BTreeMap<String, replicim::link::tls::Identity>;
        static IDS: std::sync::OnceLock<(tempfile::TempDir, Ids)> = std::sync::OnceLock::new();
        let (_, ids) = IDS.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let ids = ["site-a", "site-b", "site-c"]
                .iter()
                .map(|n| {
                    let id = replicim::link::tls::ensure_identity(&dir.path().join(n), n).unwrap();
                    (n.to_string(), id)
                })
                .collect();
            (dir, ids)
        });
        ids[name].clone()
    }

    /// `me` with `peer` pinned: mutual TLS, as `serve` runs it.
    fn config(me: &str, peer: &str, addr: &str) -> Config {
        let tls = replicim::link::tls::LinkTls {
            identity: identity(me),
            peers: BTreeMap::from([(peer.to_string(), vec![identity(peer).fingerprint()])]),
        };
        Config {
            me: me.into(),
            peers: BTreeMap::from([(peer.to_string(), addr.to_string())]),
            timing: Timing {
                heartbeat_ms: 50,
                timeout_ms: 400,
            },
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            tls: Some(tls),
        }
    }

    /// Messages to send: on a given session, or on the current one (None).
    type Sender = tokio::sync::mpsc::UnboundedSender<(Option<u64>, Msg)>;

    /// One array's link in its own runtime (so it can be killed), with
    /// its events forwarded. Dropping the returned [`Stop`] kills it.
    fn array(
        me: &str,
        peer: &str,
        listen: &str,
        peer_addr: &str,
    ) -> (Stop, smpsc::Receiver<LinkEvent>, Sender) {
        let (stop_tx, stop_rx) = smpsc::channel::<()>();
        let (ev_tx, ev_rx) = smpsc::channel();
        let (send_tx, mut send_rx) = tokio::sync::mpsc::unbounded_channel();
        let (me, peer, listen, peer_addr) = (
            me.to_string(),
            peer.to_string(),
            listen.to_string(),
            peer_addr.to_string(),
        );
        let (ready_tx, ready_rx) = smpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // A restarted array may find its port still closing.
                let mut tries = 0;
                let l = loop {
                    match tokio::net::TcpListener::bind(&listen).await {
                        Ok(l) => break l,
                        Err(e) if tries < 60 => {
                            tries += 1;
                            tracing::debug!("bind {listen}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot listen on {listen}: {e}"),
                    }
                };
                let _ = ready_tx.send(());
                let mut link = tcp::start(config(&me, &peer, &peer_addr), l);
                // The session the array last heard Up on, as the node keeps.
                let mut sid = 0;
                loop {
                    if matches!(stop_rx.try_recv(), Err(smpsc::TryRecvError::Disconnected)) {
                        break;
                    }
                    tokio::select! {
                        e = link.events.recv() => {
                            let e = e.unwrap();
                            if let LinkEvent::Up(_, s) = &e {
                                sid = *s;
                            }
                            let _ = ev_tx.send(e);
                        }
                        m = send_rx.recv() => {
                            if let Some((on, m)) = m {
                                let on: Option<u64> = on;
                                link.send(&peer, on.unwrap_or(sid), m);
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            });
            // Wait for the tasks to drop, so the sockets are closed when
            // the thread ends.
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        ready_rx.recv().unwrap();
        let stop = Stop {
            tx: Some(stop_tx),
            thread: Some(thread),
        };
        (stop, ev_rx, send_tx)
    }

    /// Dropping it kills the array's link and waits until it is gone.
    struct Stop {
        tx: Option<smpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Stop {
        fn drop(&mut self) {
            drop(self.tx.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn wait_for(
        rx: &smpsc::Receiver<LinkEvent>,
        what: &str,
        f: impl Fn(&LinkEvent) -> bool,
    ) -> LinkEvent {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(e) if f(&e) => return e,
                Ok(_) => continue,
                Err(_) => panic!("no {what} within 10 s"),
            }
        }
    }

    fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[test]
    fn tcp_link_carries_blocks_and_comes_back_after_the_peer_restarts() {
        let (addr_a, addr_b) = (free_addr(), free_addr());
        let (stop_b, ev_b, _send_b) = array("site-b", "site-a", &addr_b, &addr_a);
        let (_stop_a, ev_a, send_a) = array("site-a", "site-b", &addr_a, &addr_b);
        wait_for(
            &ev_a,
            "Up on A",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-b"),
        );
        wait_for(
            &ev_b,
            "Up on B",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-a"),
        );
        send_a.send((None, data_msg())).unwrap();
        wait_for(&ev_b, "the block on B", |e| {
            *e == LinkEvent::Message("site-a".into(), data_msg())
        });
        // B dies: A sees the link go down by itself.
        drop(stop_b);
        wait_for(
            &ev_a,
            "Down on A",
            |e| matches!(e, LinkEvent::Down(p, _) if p == "site-b"),
        );
        // B comes back on the same address: A redials and the link is up.
        let (_stop_b, ev_b, _send_b) = array("site-b", "site-a", &addr_b, &addr_a);
        wait_for(
            &ev_a,
            "Up on A again",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-b"),
        );
        wait_for(
            &ev_b,
            "Up on B again",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-a"),
        );
        send_a.send((None, data_msg())).unwrap();
        wait_for(&ev_b, "a block after the restart", |e| {
            matches!(e, LinkEvent::Message(..))
        });
    }

    #[test]
    fn an_unknown_array_is_refused_over_tcp_and_gets_no_data() {
        let (addr_a, addr_b) = (free_addr(), free_addr());
        // B expects site-c; site-a dials it and is refused, with the reason.
        let (_stop_b, ev_b, _) = array("site-b", "site-c", &addr_b, &free_addr());
        let (_stop_a, ev_a, _) = array("site-a", "site-b", &addr_a, &addr_b);
        let e = wait_for(&ev_a, "Down on A", |e| matches!(e, LinkEvent::Down(..)));
        assert!(
            matches!(&e, LinkEvent::Down(p, why) if p == "site-b" && (why.contains("TLS") || why.contains("fatal alert"))),
            "{e:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(ev_b
            .try_iter()
            .all(|e| !matches!(e, LinkEvent::Up(..) | LinkEvent::Message(..))));
    }

    /// A dialling array that restarts can reach its peer before the peer
    /// has noticed the old connection die (a black-holed link hides the
    /// death until the heartbeat timeout). The new connection replaces the
    /// old one: the peer reports Down then Up, in that order, and its
    /// messages go to the new connection (found by the lab's kill points,
    /// where a stale Down after the new Up left a group waiting forever).
    #[test]
    fn a_new_connection_from_a_restarted_peer_replaces_the_old_one() {
        let (addr_a1, addr_a2, addr_b) = (free_addr(), free_addr(), free_addr());
        // A1 reaches B through the lab's switch, so its death can be hidden.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sw = std::sync::Arc::new(replicim::lab::switch::Switch::default());
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let via = l.local_addr().unwrap().to_string();
        rt.spawn(replicim::lab::switch::relay(l, addr_b.clone(), sw.clone()));
        let (_stop_b, ev_b, send_b) = array("site-b", "site-a", &addr_b, &addr_a1);
        let (stop_a1, _, _) = array("site-a", "site-b", &addr_a1, &via);
        let first = wait_for(
            &ev_b,
            "Up on B",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-a"),
        );
        let LinkEvent::Up(_, old_sid) = first else {
            unreachable!()
        };
        // The cable is pulled and A1 dies: B cannot tell yet. A restarted
        // site-a dials B directly before B's heartbeat timeout.
        sw.set_up(false);
        drop(stop_a1);
        let (_stop_a2, ev_a2, _) = array("site-a", "site-b", &addr_a2, &addr_b);
        wait_for(
            &ev_a2,
            "Up on A2",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-b"),
        );
        let down = wait_for(&ev_b, "Down on B", |e| matches!(e, LinkEvent::Down(..)));
        assert!(
            matches!(&down, LinkEvent::Down(p, why) if p == "site-a" && why.contains("replaced")),
            "{down:?}"
        );
        wait_for(
            &ev_b,
            "Up on B after the Down",
            |e| matches!(e, LinkEvent::Up(p, _) if p == "site-a"),
        );
        // A message B meant for the old session is never sent on the new
        // one; one meant for the new session is.
        let mut stale = data_msg();
        if let Msg::Data { block, .. } = &mut stale {
            *block = 77;
        }
        send_b.send((Some(old_sid), stale.clone())).unwrap();
        send_b.send((None, data_msg())).unwrap();
        let got = wait_for(&ev_a2, "the block on the new connection", |e| {
            matches!(e, LinkEvent::Message(..))
        });
        assert_eq!(got, LinkEvent::Message("site-b".into(), data_msg()));
        // Past the old connection's heartbeat timeout, B reports nothing
        // more about it.
        std::thread::sleep(Duration::from_millis(800));
        let late: Vec<LinkEvent> = ev_b.try_iter().collect();
        assert!(
            late.iter().all(|e| !matches!(e, LinkEvent::Down(..))),
            "a stale Down after the new Up: {late:?}"
        );
    }
}
