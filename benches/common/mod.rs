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
