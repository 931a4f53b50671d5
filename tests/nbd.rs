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
    let dir = tempfile::tempdir().unwrap();
    let mut fs = FileStore::open(dir.path()).unwrap();
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
            server::run(l, Arc::new(exports), async {
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
