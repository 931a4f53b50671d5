//! What the CIM and lab benchmarks share: a load generator with
//! keep-alive connections, and a bare hyper server (a child process: this
//! benchmark binary re-executed with `--child-bare N`) as the same-run
//! baseline answering with a body of the same size.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Child: a bare hyper server answering every request with `body`.
pub fn child_bare(body: Vec<u8>) {
    let body = Bytes::from(body);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", l.local_addr().unwrap());
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Server {
            child,
            addr: line.trim().to_string(),
        }
    }

    /// Peak resident set size of the server process, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CIM-XML intrinsic call on root/cimv2: (body, method).
pub fn cim_request(op: &str, params: &str) -> (Vec<u8>, String) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1001\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"{op}\"><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cimv2\"/></LOCALNAMESPACEPATH>{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    );
    (body.into_bytes(), op.to_string())
}

/// Drives `conns` keep-alive connections for `secs`; returns (requests,
/// response bytes, elapsed).
pub async fn load(
    addr: &str,
    body: &[u8],
    method: &str,
    conns: usize,
    secs: f64,
) -> (u64, u64, Duration) {
    load_as(addr, body, method, conns, secs, None).await
}

/// As [`load`], with an Authorization header value on every request.
pub async fn load_as(
    addr: &str,
    body: &[u8],
    method: &str,
    conns: usize,
    secs: f64,
    auth: Option<String>,
) -> (u64, u64, Duration) {
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (count, bytes) = (count.clone(), bytes.clone());
        let body = Bytes::copy_from_slice(body);
        let addr = addr.to_string();
        let method = method.to_string();
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            while Instant::now() < deadline {
                let mut req = Request::post("/cimom")
                    .header("host", &addr)
                    .header("content-type", "application/xml; charset=\"utf-8\"")
                    .header("cimoperation", "MethodCall")
                    .header("cimmethod", &method)
                    .header("cimobject", "root/cimv2");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                let req = req.body(Full::new(body.clone())).unwrap();
                send.ready().await.unwrap();
                let resp = send.send_request(req).await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                assert!(got.len() > 50);
                count.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        count.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        start.elapsed(),
    )
}

/// A minimal NBD client: fixed newstyle, NBD_OPT_EXPORT_NAME, simple
/// replies, one request at a time.
pub struct Nbd {
    s: TcpStream,
    handle: u64,
}

impl Nbd {
    pub fn connect(port: u16, export: &str) -> Nbd {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[0..8], b"NBDMAGIC");
        s.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
        let mut opt = Vec::new();
        opt.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
        opt.extend_from_slice(&1u32.to_be_bytes()); // NBD_OPT_EXPORT_NAME
        opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
        opt.extend_from_slice(export.as_bytes());
        s.write_all(&opt).unwrap();
        let mut info = [0u8; 10];
        s.read_exact(&mut info).unwrap();
        Nbd { s, handle: 0 }
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        self.handle += 1;
        let mut req = Vec::with_capacity(28 + data.len());
        req.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        req.extend_from_slice(&0u16.to_be_bytes());
        req.extend_from_slice(&1u16.to_be_bytes()); // NBD_CMD_WRITE
        req.extend_from_slice(&self.handle.to_be_bytes());
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&(data.len() as u32).to_be_bytes());
        req.extend_from_slice(data);
        self.s.write_all(&req).unwrap();
        let mut reply = [0u8; 16];
        self.s.read_exact(&mut reply).unwrap();
        let err = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        assert_eq!(err, 0, "NBD write error {err}");
    }
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p) as usize]
}

/// 4 KiB random writes, one in flight, alternating 500 at a time between
/// `baseline` and `measured` exports on `port` over 8 rounds (the first
/// one a warm-up): their latencies in µs, (measured, baseline).
pub fn paired_writes(port: u16, measured: &str, baseline: &str) -> (Vec<f64>, Vec<f64>) {
    let mut rep = Nbd::connect(port, measured);
    let mut solo = Nbd::connect(port, baseline);
    let mut rng = replicim::sim::Rng::new(42);
    let data = vec![0xa5u8; 4096];
    let (mut t_rep, mut t_solo) = (Vec::new(), Vec::new());
    for round in 0..8 {
        for (c, out) in [(&mut solo, &mut t_solo), (&mut rep, &mut t_rep)] {
            for _ in 0..500 {
                let off = rng.below(16384) * 4096;
                let t = Instant::now();
                c.write(off, &data);
                if round > 0 {
                    out.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
    (t_rep, t_solo)
}

/// Which benchmarks a run selects (the first argument that is no flag
/// names them by substring), after printing the run's header and the
/// table head; and a runner that gives each its own lab directory under
/// the temp dir, removed after it (kept if it panics).
#[allow(clippy::type_complexity)]
pub fn bench_main(
    what: &str,
) -> (
    impl Fn(&str) -> bool,
    impl Fn(&str, &dyn Fn(&std::path::Path)),
) {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = move |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    println!(
        "{what} benchmarks, {} ({} CPUs available), {}",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    println!("| measurement | replicim | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    let run = |name: &str, f: &dyn Fn(&std::path::Path)| {
        let d = std::env::temp_dir().join(format!("replicim-bench-{name}"));
        let _ = std::fs::remove_dir_all(&d);
        f(&d);
        let _ = std::fs::remove_dir_all(&d);
    };
    (want, run)
}
