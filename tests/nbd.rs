//! The NBD export with the real clients: qemu-io, qemu-img and qemu-nbd
//! against volumes in a FileStore, checked through the store itself.

use std::sync::{Arc, Mutex};

use crate::cim_support::run;
use replicim::core::{BlockStore, BLOCK_SIZE};
use replicim::nbd::{server, Device, Exports, StoreDevice};
use replicim::store::FileStore;

struct Served {
    addr: String,
    store: Arc<Mutex<FileStore>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// vol0 (4 MiB, writable) and ro (1 MiB, read-only) on 127.0.0.1.
fn serve() -> Served {
    serve_with(tempfile::tempdir().unwrap(), server::Config::default())
}

/// The same with `config` (TLS, limits); `dir` may hold the array's PKI.
fn serve_with(dir: tempfile::TempDir, config: server::Config) -> Served {
    let mut fs = FileStore::open(&dir.path().join("store")).unwrap();
    fs.create_volume("vol0", 1024).unwrap();
    fs.create_volume("ro", 256).unwrap();
    let store = Arc::new(Mutex::new(fs));
    let mut exports = Exports::new();
    exports.insert(
        "vol0".into(),
        Arc::new(StoreDevice::new(store.clone(), "vol0", 1024, false)) as Arc<dyn Device>,
    );
    exports.insert(
        "ro".into(),
        Arc::new(StoreDevice::new(store.clone(), "ro", 256, true)) as Arc<dyn Device>,
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            server::run(l, Arc::new(exports), config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    Served {
        addr,
        store,
        stop: Some(tx),
        thread: Some(thread),
        _dir: dir,
    }
}

fn qemu_io(s: &Served, export: &str, cmds: &[&str]) -> (i32, String) {
    let url = format!("nbd://{}/{export}", s.addr);
    let mut args = vec!["-f", "raw", url.as_str()];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    let (rc, out, err) = run("qemu-io", &args);
    (rc, format!("{out}{err}"))
}

fn block(s: &Served, vol: &str, b: u64) -> Box<[u8; BLOCK_SIZE]> {
    let mut out = Box::new([0u8; BLOCK_SIZE]);
    s.store
        .lock()
        .unwrap()
        .read_block(vol, b, &mut out)
        .unwrap();
    out
}

#[test]
fn qemu_io_writes_and_reads_back_through_nbd() {
    let s = serve();
    let (rc, out) = qemu_io(
        &s,
        "vol0",
        &["write -P 0xab 0 1M", "read -P 0xab 0 1M", "flush"],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    // The bytes are in the store, block for block.
    assert!(block(&s, "vol0", 0).iter().all(|&b| b == 0xab));
    assert!(block(&s, "vol0", 255).iter().all(|&b| b == 0xab));
    assert!(block(&s, "vol0", 256).iter().all(|&b| b == 0));
    // Unaligned: 5000 bytes at 1 MiB + 1000 straddle two blocks.
    let (rc, out) = qemu_io(
        &s,
        "vol0",
        &[
            "write -P 0x11 1049576 5000",
            "read -P 0x11 1049576 5000",
            "read -P 0 1048576 1000",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let b = block(&s, "vol0", 256);
    assert!(b[..1000].iter().all(|&x| x == 0) && b[1000..].iter().all(|&x| x == 0x11));
    let b = block(&s, "vol0", 257);
    assert!(b[..1904].iter().all(|&x| x == 0x11) && b[1904..].iter().all(|&x| x == 0));
    // Discard reads back as zeroes.
    let (rc, out) = qemu_io(
        &s,
        "vol0",
        &["discard 0 64k", "read -P 0 0 64k", "read -P 0xab 64k 4k"],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let s = serve();
    // The export says it is read-only, so qemu refuses to open it for
    // writing.
    let (rc, out) = qemu_io(&s, "ro", &["write -P 0xcd 0 4k"]);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(
        block(&s, "ro", 0).iter().all(|&b| b == 0),
        "a refused write changed the volume"
    );
    let url = format!("nbd://{}/ro", s.addr);
    let (rc, out, err) = run(
        "qemu-io",
        &["-r", "-f", "raw", &url, "-c", "read -P 0 0 1M"],
    );
    assert_eq!(rc, 0, "{out}{err}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    // A client that writes anyway gets EPERM from the device.
    let dev = StoreDevice::new(s.store.clone(), "ro", 256, true);
    assert_eq!(dev.write(0, &[1u8; 512]), Err(replicim::nbd::Errno::Perm));
}

#[test]
fn qemu_img_and_qemu_nbd_see_the_exports() {
    let s = serve();
    let url = format!("nbd://{}/vol0", s.addr);
    let (rc, out, err) = run("qemu-img", &["info", "--output=json", &url]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("\"virtual-size\": 4194304"), "{out}");
    let (host, port) = s.addr.split_once(':').unwrap();
    let (rc, out, err) = run("qemu-nbd", &["--list", "--bind", host, "--port", port]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("exports available: 2"), "{out}");
    let ro = &out[out.find("export: 'ro'").expect("ro listed")..];
    assert!(
        ro.contains("size:  1048576") && ro.contains("readonly"),
        "{out}"
    );
    let vol0 = &out[out.find("export: 'vol0'").expect("vol0 listed")..];
    assert!(
        vol0.contains("size:  4194304") && vol0.contains("trim"),
        "{out}"
    );
    assert!(!vol0.contains("readonly"), "{out}");
    // An export that does not exist is named in the error.
    let (rc, out) = qemu_io(&s, "nosuch", &["read 0 4k"]);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("no export named"), "{out}");
}

/// Garbage, an oversized option and a request past the end: each gets a
/// closed connection or an error reply, and the server goes on serving.
#[test]
fn bad_nbd_input_is_refused_and_the_server_keeps_serving() {
    use std::io::{Read, Write};
    let s = serve();
    let hello = |c: &mut std::net::TcpStream| {
        let mut h = [0u8; 18];
        c.read_exact(&mut h).unwrap();
        assert_eq!(&h[..8], b"NBDMAGIC");
        c.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
    };
    let closed = |c: &mut std::net::TcpStream| {
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 64];
        matches!(c.read(&mut b), Ok(0) | Err(_))
    };
    // Not an option at all.
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    hello(&mut c);
    c.write_all(&[0x55; 16]).unwrap();
    assert!(closed(&mut c), "garbage did not close the connection");
    // An option claiming 1 GiB of payload.
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    hello(&mut c);
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&7u32.to_be_bytes());
    opt.extend_from_slice(&(1u32 << 30).to_be_bytes());
    c.write_all(&opt).unwrap();
    assert!(
        closed(&mut c),
        "an oversized option did not close the connection"
    );
    // A read past the end of the export is EINVAL (22), on a connection
    // that stays usable.
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    hello(&mut c);
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&1u32.to_be_bytes()); // OPT_EXPORT_NAME
    opt.extend_from_slice(&4u32.to_be_bytes());
    opt.extend_from_slice(b"vol0");
    c.write_all(&opt).unwrap();
    let mut info = [0u8; 10];
    c.read_exact(&mut info).unwrap();
    assert_eq!(u64::from_be_bytes(info[..8].try_into().unwrap()), 4 << 20);
    let request = |c: &mut std::net::TcpStream, handle: u64, offset: u64, len: u32| {
        let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&0u16.to_be_bytes()); // READ
        r.extend_from_slice(&handle.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        c.write_all(&r).unwrap();
        let mut reply = [0u8; 16];
        c.read_exact(&mut reply).unwrap();
        assert_eq!(
            u32::from_be_bytes(reply[..4].try_into().unwrap()),
            0x6744_6698
        );
        assert_eq!(u64::from_be_bytes(reply[8..].try_into().unwrap()), handle);
        u32::from_be_bytes(reply[4..8].try_into().unwrap())
    };
    assert_eq!(request(&mut c, 7, (4 << 20) - 4096, 8192), 22);
    assert_eq!(request(&mut c, 8, 0, 512), 0);
    let mut data = [0u8; 512];
    c.read_exact(&mut data).unwrap();
    let (rc, out) = qemu_io(&s, "vol0", &["write -P 0x42 0 4k", "read -P 0x42 0 4k"]);
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
}

/// A server whose PKI lives in its directory, with NBD TLS `mode` and
/// client certificates required; returns it and a client directory the
/// array's CA issued.
fn serve_tls(mode: server::TlsMode) -> (Served, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pki = replicim::pki::ensure(&dir.path().join("tls"), "site-a", "site-a").unwrap();
    let client = dir.path().join("client");
    replicim::pki::issue_client(&pki, &client, "host1").unwrap();
    let tls = replicim::pki::server_config(
        &pki.cert,
        &pki.key,
        Some(&pki.ca),
        replicim::pki::ClientCerts::Required,
    )
    .unwrap();
    let config = server::Config {
        tls: mode,
        acceptor: Some(tokio_rustls::TlsAcceptor::from(tls)),
        ..server::Config::default()
    };
    (serve_with(dir, config), client)
}

/// qemu-io over NBD with TLS, credentials from `creds` (a tls-creds-x509
/// directory).
fn qemu_io_tls(s: &Served, creds: &std::path::Path, export: &str, cmds: &[&str]) -> (i32, String) {
    let (host, port) = s.addr.split_once(':').unwrap();
    let object = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=client",
        creds.display()
    );
    let image = format!("driver=nbd,host={host},port={port},export={export},tls-creds=tls0");
    let mut args = vec!["--object", object.as_str(), "--image-opts", image.as_str()];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    let (rc, out, err) = run("qemu-io", &args);
    (rc, format!("{out}{err}"))
}

/// Opens a plaintext session and sends one option; returns the reply's
/// type.
fn plaintext_option(addr: &str, opt: u32, data: &[u8]) -> u32 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut h = [0u8; 18];
    c.read_exact(&mut h).unwrap();
    c.write_all(&3u32.to_be_bytes()).unwrap();
    let mut o = b"IHAVEOPT".to_vec();
    o.extend_from_slice(&opt.to_be_bytes());
    o.extend_from_slice(&(data.len() as u32).to_be_bytes());
    o.extend_from_slice(data);
    c.write_all(&o).unwrap();
    let mut reply = [0u8; 20];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(
        u64::from_be_bytes(reply[..8].try_into().unwrap()),
        0x0003_e889_0455_65a9
    );
    assert_eq!(u32::from_be_bytes(reply[8..12].try_into().unwrap()), opt);
    u32::from_be_bytes(reply[12..16].try_into().unwrap())
}

const REP_ERR_TLS_REQD: u32 = 0x8000_0005;

#[test]
fn qemu_io_reads_and_writes_over_tls_and_plaintext_is_refused_when_required() {
    let (s, creds) = serve_tls(server::TlsMode::Required);
    let (rc, out) = qemu_io_tls(
        &s,
        &creds,
        "vol0",
        &["write -P 0x5a 0 1M", "read -P 0x5a 0 1M", "flush"],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert!(block(&s, "vol0", 0).iter().all(|&b| b == 0x5a));
    assert!(block(&s, "vol0", 255).iter().all(|&b| b == 0x5a));
    // A plaintext qemu-io is refused, and nothing it meant to write lands.
    let (rc, out) = qemu_io(&s, "vol0", &["write -P 0x11 0 4k"]);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("TLS"), "the refusal does not name TLS: {out}");
    assert!(block(&s, "vol0", 0).iter().all(|&b| b == 0x5a));
    // On the wire: every option but STARTTLS is NBD_REP_ERR_TLS_REQD.
    for (opt, data) in [
        (3u32, &b""[..]),
        (7, &b"\0\0\0\x04vol0\0\0"[..]),
        (6, &b"\0\0\0\x04vol0\0\0"[..]),
    ] {
        assert_eq!(
            plaintext_option(&s.addr, opt, data),
            REP_ERR_TLS_REQD,
            "option {opt} in clear"
        );
    }
    // STARTTLS is acknowledged.
    assert_eq!(plaintext_option(&s.addr, 5, b""), 1);
    // A TLS client without a certificate, or with one another CA signed,
    // is refused by the handshake.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(creds.join("ca-cert.pem"), bare.path().join("ca-cert.pem")).unwrap();
    let (rc, out) = qemu_io_tls(&s, bare.path(), "vol0", &["read 0 4k"]);
    assert_ne!(
        rc, 0,
        "a TLS client without a certificate was served: {out}"
    );
    let other = tempfile::tempdir().unwrap();
    let pki = replicim::pki::ensure(&other.path().join("tls"), "site-x", "site-x").unwrap();
    replicim::pki::issue_client(&pki, &other.path().join("c"), "host1").unwrap();
    let stranger = other.path().join("c");
    // It trusts our server (our CA), but its own certificate is not ours.
    std::fs::copy(creds.join("ca-cert.pem"), stranger.join("ca-cert.pem")).unwrap();
    let (rc, out) = qemu_io_tls(&s, &stranger, "vol0", &["write -P 0x22 0 4k"]);
    assert_ne!(rc, 0, "a stranger's certificate was served: {out}");
    assert!(block(&s, "vol0", 0).iter().all(|&b| b == 0x5a));
    // And the real client still works.
    let (rc, out) = qemu_io_tls(&s, &creds, "vol0", &["read -P 0x5a 0 64k"]);
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn tls_optional_serves_tls_and_plaintext_clients() {
    let (s, creds) = serve_tls(server::TlsMode::Optional);
    let (rc, out) = qemu_io_tls(&s, &creds, "vol0", &["write -P 0x33 0 64k"]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = qemu_io(&s, "vol0", &["read -P 0x33 0 64k"]);
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    // With TLS off, STARTTLS is unsupported and clients go on in clear.
    let s = serve();
    assert_eq!(plaintext_option(&s.addr, 5, b""), 0x8000_0001);
    let (rc, out) = qemu_io_tls(&s, &creds, "vol0", &["read 0 4k"]);
    assert_ne!(rc, 0, "qemu asked for TLS and got clear: {out}");
}

/// One address gets its share of connections and no more, a client that
/// never finishes the handshake is cut off, and a real client is served
/// meanwhile.
#[test]
fn nbd_connections_are_bounded_per_address_and_in_time() {
    use std::io::Read;
    let s = serve_with(
        tempfile::tempdir().unwrap(),
        server::Config {
            per_addr: 8,
            handshake_timeout: std::time::Duration::from_secs(2),
            ..server::Config::default()
        },
    );
    let addr: std::net::SocketAddr = s.addr.parse().unwrap();
    let from = |ip: [u8; 4]| {
        let sock = socket2_connect(ip, addr);
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        sock
    };
    let t0 = std::time::Instant::now();
    let mut held: Vec<_> = (0..20).map(|_| from([127, 0, 0, 2])).collect();
    // The first 8 get the greeting; the rest are closed at once.
    let mut greeted = 0;
    for c in held.iter_mut() {
        let mut h = [0u8; 18];
        if c.read_exact(&mut h).is_ok() {
            greeted += 1;
        }
    }
    assert_eq!(
        greeted, 8,
        "connections from one address beyond its share were served"
    );
    let (rc, out) = qemu_io(&s, "vol0", &["write -P 0x44 0 4k", "read -P 0x44 0 4k"]);
    assert_eq!(
        rc, 0,
        "a real client was not served while one address held its share: {out}"
    );
    // The greeted ones never answered: closed by the handshake timeout.
    for c in held.iter_mut() {
        let mut b = [0u8; 8];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
    let took = t0.elapsed();
    assert!(
        took < std::time::Duration::from_secs(9),
        "stalled handshakes were held for {took:?}"
    );
}

/// A TCP connection to `to` from the loopback address `ip`.
fn socket2_connect(ip: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    crate::util::connect_from(ip, to)
}
