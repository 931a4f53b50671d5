//! The CIM-XML HTTP server (DSP0200) on hyper 1 and tokio.
//!
//! `run(listener, tls, state, shutdown)` serves one listener until
//! `shutdown` resolves, then drains open connections. Per request it checks
//! the HTTP envelope (method, CIM headers, content type, size, credentials),
//! decodes the body into a typed operation, dispatches it, and streams the
//! reply. Protocol faults get HTTP 400/401/413/501 with a `CIMError` header;
//! CIM errors are HTTP 200 with an ERROR element. Credentials are never
//! logged.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::dispatch::{Dispatcher, ItemWriter, Reply};
use super::xml::decode::{self, Call, Limits};
use super::{headers, ops};
use crate::guard::{self, Guard, Verdict};

/// Limits and credentials of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// (user, password) for HTTP Basic; None turns authentication off.
    /// Over HTTPS a client certificate signed by the array's CA stands in
    /// for them.
    pub credentials: Option<(String, String)>,
    pub max_body: usize,
    pub xml: Limits,
    pub request_timeout: Duration,
    /// How long a client has to send a request's headers once it has
    /// opened a connection or had its last answer (hyper's timer also runs
    /// while a kept-alive connection idles), and to finish a TLS handshake.
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Per client address, and failed-login blocking.
    pub guard: guard::Limits,
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            credentials: None,
            max_body: 4 << 20,
            xml: Limits::default(),
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            guard: guard::Limits::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

type Body = Either<Full<Bytes>, Streamed>;

/// A streamed reply: the head, then chunks of about 64 KiB of encoded
/// items, then the tail — each made when hyper asks for the next frame, in
/// the connection's own task. (An earlier design fed http-body-util's
/// `Channel` from a spawned task. Its `poll_frame` checks the frame queue,
/// then the sender's close signal; a task that queued its last frames and
/// dropped the sender between those two checks ended the body early, so
/// under load a reply reached the client cut short, even empty.)
pub struct Streamed {
    head: Option<Vec<u8>>,
    items: Option<ItemWriter>,
    tail: Option<Vec<u8>>,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let data = |v: Vec<u8>| Some(Ok(hyper::body::Frame::data(Bytes::from(v))));
        if let Some(h) = this.head.take() {
            return std::task::Poll::Ready(data(h));
        }
        if let Some(items) = this.items.as_mut() {
            let mut chunk = Vec::with_capacity(96 * 1024);
            let mut more = true;
            while more && chunk.len() < 64 * 1024 {
                more = items(&mut chunk);
            }
            if !more {
                this.items = None;
            }
            if !chunk.is_empty() {
                return std::task::Poll::Ready(data(chunk));
            }
        }
        std::task::Poll::Ready(this.tail.take().and_then(data))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.items.is_none() && self.tail.is_none()
    }
}

/// What every connection shares (all listeners of an array share one).
pub struct State {
    pub dispatcher: Arc<Dispatcher>,
    pub config: ServerConfig,
    pub guard: Arc<Guard>,
}

impl State {
    pub fn new(dispatcher: Arc<Dispatcher>, config: ServerConfig) -> State {
        let guard = Guard::new(config.guard);
        State {
            dispatcher,
            config,
            guard,
        }
    }
}

/// Who a connection's client is, as far as TLS tells.
#[derive(Clone, Debug)]
struct Client {
    addr: SocketAddr,
    /// The subject of a client certificate the array's CA signed.
    certificate: Option<Arc<str>>,
}

/// Serves `listener` (TLS when `tls` is given) until `shutdown` resolves,
/// then stops accepting and waits for open connections to finish (at most
/// `drain_timeout`).
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.config.max_connections));
    let mut full_logged = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if !full_logged {
                        tracing::warn!(limit = state.config.max_connections, "refusing connections: the server holds its limit");
                        full_logged = true;
                    }
                    continue;
                };
                if full_logged && slots.available_permits() > state.config.max_connections / 2 {
                    tracing::warn!("accepting connections again");
                    full_logged = false;
                }
                let Some(slot) = state.guard.connect(peer.ip()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let tls = tls.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let (_permit, _slot) = (permit, slot);
                    let mut builder = http1::Builder::new();
                    builder.keep_alive(true).timer(TokioTimer::new()).header_read_timeout(state.config.header_timeout);
                    let result = match tls {
                        Some(acceptor) => match tokio::time::timeout(state.config.header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => {
                                let certificate = s.get_ref().1.peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| Arc::from(subject_of(c).as_str()));
                                let client = Client { addr: peer, certificate };
                                let svc_state = state.clone();
                                let service = service_fn(move |req| handle(req, svc_state.clone(), client.clone()));
                                watcher.watch(builder.serve_connection(TokioIo::new(s), service)).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        },
                        None => {
                            let client = Client { addr: peer, certificate: None };
                            let svc_state = state.clone();
                            let service = service_fn(move |req| handle(req, svc_state.clone(), client.clone()));
                            watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(state.config.drain_timeout) => {
            tracing::warn!("shutdown: connections still open after the drain timeout");
        }
    }
    Ok(())
}

fn plain(status: StatusCode, cim_error: Option<&str>, text: &str) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(format!("{text}\n")))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(e) = cim_error {
        r.headers_mut()
            .insert("cimerror", HeaderValue::from_str(e).expect("ascii"));
    }
    r
}

/// The header `name`, with the M-POST `NN-` prefix when there is one.
fn cim_header<'a>(h: &'a HeaderMap, prefix: &str, name: &str) -> Option<&'a str> {
    h.get(format!("{prefix}{name}").as_str())
        .or_else(|| h.get(name))
        .and_then(|v| v.to_str().ok())
}

/// How many times the header `name` was sent (prefixed or not).
fn cim_header_count(h: &HeaderMap, prefix: &str, name: &str) -> usize {
    let prefixed = if prefix.is_empty() {
        0
    } else {
        h.get_all(format!("{prefix}{name}").as_str()).iter().count()
    };
    prefixed + h.get_all(name).iter().count()
}

fn mismatch(text: &str) -> Response<Body> {
    plain(StatusCode::BAD_REQUEST, Some("header-mismatch"), text)
}

fn authorized(h: &HeaderMap, creds: &(String, String)) -> bool {
    let Some(v) = h.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let want = format!("{}:{}", creds.0, creds.1);
    // Compare without an early exit on the first differing byte.
    raw.len() == want.len()
        && raw
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    client: Client,
) -> Result<Response<Body>, Infallible> {
    let timeout = state.config.request_timeout;
    match tokio::time::timeout(timeout, respond(req, state, client)).await {
        Ok(r) => Ok(r),
        Err(_) => Ok(plain(
            StatusCode::REQUEST_TIMEOUT,
            None,
            "request took too long",
        )),
    }
}

async fn respond(req: Request<Incoming>, state: Arc<State>, client: Client) -> Response<Body> {
    let peer = client.addr;
    let started = Instant::now();
    let cfg = &state.config;
    // Method: POST, or M-POST with the extension prefix; anything else 501.
    let mpost = req.method().as_str() == "M-POST";
    if req.method() != Method::POST && !mpost {
        return plain(
            StatusCode::NOT_IMPLEMENTED,
            None,
            "only POST and M-POST carry CIM operations",
        );
    }
    let mut prefix = String::new();
    if mpost {
        if req.version() == hyper::Version::HTTP_10 {
            return plain(StatusCode::BAD_REQUEST, None, "M-POST needs HTTP/1.1");
        }
        let man = req
            .headers()
            .get("man")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match man.split(';').find_map(|p| p.trim().strip_prefix("ns=")) {
            Some(ns) if ns.len() == 2 && ns.bytes().all(|b| b.is_ascii_digit()) => {
                prefix = format!("{ns}-")
            }
            _ => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    None,
                    "M-POST needs a Man header with ns=NN",
                )
            }
        }
    }
    if let (Some(creds), None) = (&cfg.credentials, &client.certificate) {
        if let Verdict::Blocked(left) = state.guard.check(peer.ip()) {
            let mut r = plain(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "too many failed logins from this address; try again later",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(left.as_secs().max(1)));
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
            return r;
        }
        if authorized(req.headers(), creds) {
            state.guard.succeeded(peer.ip());
        } else {
            // A request without any credentials is how clients find out
            // they need them (pywbem sends them at once, browsers do not):
            // only wrong ones count.
            if req.headers().contains_key("authorization") {
                state.guard.failed(peer.ip());
            }
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                None,
                "HTTP Basic credentials are required",
            );
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"replicim\""),
            );
            return r;
        }
    }
    let h = req.headers();
    if req.version() == hyper::Version::HTTP_11 && !h.contains_key("host") {
        return plain(
            StatusCode::BAD_REQUEST,
            None,
            "an HTTP/1.1 request needs a Host header",
        );
    }
    if cim_header_count(h, &prefix, "CIMOperation") > 1 {
        return plain(
            StatusCode::BAD_REQUEST,
            Some("unsupported-operation"),
            "the CIMOperation header is sent more than once",
        );
    }
    match cim_header(h, &prefix, "CIMOperation") {
        None => {
            return plain(
                StatusCode::BAD_REQUEST,
                None,
                "not a CIM request: the CIMOperation header is missing",
            )
        }
        Some(v) if !v.trim().eq_ignore_ascii_case("MethodCall") => {
            return plain(
                StatusCode::BAD_REQUEST,
                Some("unsupported-operation"),
                "CIMOperation must be MethodCall",
            )
        }
        Some(_) => {}
    }
    if cim_header(h, &prefix, "CIMBatch").is_some() {
        return plain(
            StatusCode::NOT_IMPLEMENTED,
            Some("multiple-requests-unsupported"),
            "batched requests are not supported",
        );
    }
    if let Some(ct) = h.get("content-type").and_then(|v| v.to_str().ok()) {
        let lower = ct.to_ascii_lowercase();
        let mime = lower.split(';').next().unwrap_or("").trim();
        let charset = lower
            .split(';')
            .find_map(|p| p.trim().strip_prefix("charset="))
            .map(|c| c.trim_matches('"').to_string());
        if !(mime == "application/xml" || mime == "text/xml")
            || charset.is_some_and(|c| c != "utf-8" && c != "utf8")
        {
            return plain(
                StatusCode::BAD_REQUEST,
                Some("request-not-valid"),
                "Content-Type must be application/xml or text/xml in UTF-8",
            );
        }
    }
    let batch = cim_header(h, &prefix, "CIMBatch").is_some();
    let header_version = cim_header(h, &prefix, "CIMProtocolVersion")
        .unwrap_or("1.0")
        .trim()
        .to_string();
    for name in ["CIMMethod", "CIMObject"] {
        match cim_header_count(h, &prefix, name) {
            0 => return mismatch(&format!("the {name} header is missing")),
            1 => {}
            _ => return mismatch(&format!("the {name} header is sent more than once")),
        }
    }
    let header_method = cim_header(h, &prefix, "CIMMethod")
        .unwrap_or("")
        .trim()
        .to_string();
    if header_method.is_empty() {
        return mismatch("the CIMMethod header is empty");
    }
    let header_object = cim_header(h, &prefix, "CIMObject")
        .unwrap_or("")
        .to_string();
    if let Some(len) = h
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > cfg.max_body {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("request-not-valid"),
                &format!("request body above the {} byte limit", cfg.max_body),
            );
        }
    }
    let body = match Limited::new(req.into_body(), cfg.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("request-not-valid"),
                &format!("request body above the {} byte limit", cfg.max_body),
            )
        }
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                None,
                &format!("could not read the request body: {e}"),
            )
        }
    };
    if std::str::from_utf8(&body).is_err() {
        return plain(
            StatusCode::BAD_REQUEST,
            Some("request-not-valid"),
            "the request body is not UTF-8",
        );
    }
    let request = match decode::request(&body, cfg.xml) {
        Ok(r) => r,
        Err(decode::DecodeError::MultiRequest) if !batch => {
            return mismatch("a MULTIREQ body needs the CIMBatch header");
        }
        // The header and the body disagree before either is unsupported.
        Err(decode::DecodeError::ProtocolVersion(v)) if v != header_version => {
            return mismatch(&format!(
                "CIMProtocolVersion {header_version} does not match the body's PROTOCOLVERSION {v}"
            ));
        }
        Err(e) => {
            let (status, cim_error) = e.cim_error();
            tracing::info!(%peer, error = %e, "malformed request");
            return plain(
                StatusCode::from_u16(status).expect("valid"),
                Some(cim_error),
                &e.to_string(),
            );
        }
    };
    let (method, ns) = match &request.call {
        Call::Intrinsic {
            method, namespace, ..
        }
        | Call::Extrinsic {
            method, namespace, ..
        } => (method.clone(), namespace.clone()),
    };
    if header_version != request.protocol_version {
        return mismatch(&format!(
            "CIMProtocolVersion {header_version} does not match the body's PROTOCOLVERSION {}",
            request.protocol_version
        ));
    }
    // The method name, percent-decoded (or as sent, when that fails).
    let named = |m: &str| m.eq_ignore_ascii_case(&method);
    if !headers::percent_decode(&header_method).is_some_and(|m| named(&m)) && !named(&header_method)
    {
        return mismatch(&format!(
            "the CIMMethod header {header_method:?} does not name the method in the body ({method})"
        ));
    }
    if let Err(why) = headers::object_matches(&header_object, &request.call) {
        return mismatch(&why);
    }
    // Method calls change things: each is logged at info (an audit trail of
    // operator actions). Reads are logged at debug, under the target
    // `replicim::cim::access` (RUST_LOG=info,replicim::cim::access=debug):
    // one line per read costs more than the read itself at full rate.
    let change = matches!(request.call, Call::Extrinsic { .. });
    let span = if change {
        tracing::info_span!(target: "replicim::cim::access", "cim", op = %method, namespace = %ns, class = tracing::field::Empty, status = tracing::field::Empty, duration_us = tracing::field::Empty)
    } else {
        tracing::debug_span!(target: "replicim::cim::access", "cim", op = %method, namespace = %ns, class = tracing::field::Empty, status = tracing::field::Empty, duration_us = tracing::field::Empty)
    };
    let dispatcher = state.dispatcher.clone();
    let reply: Reply = span.in_scope(|| match request.call {
        Call::Intrinsic {
            namespace,
            method,
            params,
        } => match ops::parse(&method, params) {
            Ok(op) => {
                if let Some(c) = op.class_name() {
                    span.record("class", c.as_str());
                }
                dispatcher.intrinsic(&request.id, &method, &namespace, op)
            }
            Err(e) => super::dispatch::error_reply(&request.id, &method, true, &e),
        },
        Call::Extrinsic {
            namespace,
            target,
            method,
            params,
        } => {
            span.record("class", target.class.as_str());
            dispatcher.extrinsic(&request.id, &method, &namespace, target, params)
        }
    });
    if let Some(why) = &reply.not_valid {
        tracing::debug!(%peer, "request not valid: {why}");
        return plain(StatusCode::BAD_REQUEST, Some("request-not-valid"), why);
    }
    span.record("status", reply.status);
    span.record("duration_us", started.elapsed().as_micros() as u64);
    span.in_scope(|| {
        if change {
            tracing::info!(target: "replicim::cim::access", cim_object = header_object.as_str(), "request");
        } else {
            tracing::debug!(target: "replicim::cim::access", cim_object = header_object.as_str(), "request");
        }
    });

    let mut response = match reply.items {
        None => {
            let mut b = reply.head;
            b.extend_from_slice(&reply.tail);
            Response::new(Either::Left(Full::new(Bytes::from(b))))
        }
        Some(items) => Response::new(Either::Right(Streamed {
            head: Some(reply.head),
            items: Some(items),
            tail: Some(reply.tail),
        })),
    };
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/xml; charset=\"utf-8\""),
    );
    if mpost {
        headers.insert("ext", HeaderValue::from_static(""));
        headers.insert(
            "man",
            HeaderValue::from_str(&format!(
                "http://www.dmtf.org/cim/mapping/http/v1.0;ns={}",
                &prefix[..2]
            ))
            .expect("ascii"),
        );
        headers.insert(
            hyper::header::HeaderName::from_bytes(format!("{prefix}CIMOperation").as_bytes())
                .expect("valid"),
            HeaderValue::from_static("MethodResponse"),
        );
    } else {
        headers.insert("cimoperation", HeaderValue::from_static("MethodResponse"));
    }
    response
}

/// A TLS acceptor for the HTTPS listeners: the server certificate and
/// key, and client certificates (optional) checked against `client_ca`.
pub fn tls_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, String> {
    let clients = if client_ca.is_some() {
        crate::pki::ClientCerts::Optional
    } else {
        crate::pki::ClientCerts::Off
    };
    Ok(TlsAcceptor::from(crate::pki::server_config(
        cert, key, client_ca, clients,
    )?))
}

/// The subject common name of a certificate, for the log.
fn subject_of(cert: &rustls::pki_types::CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, c)) => c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|n| n.as_str().ok())
            .unwrap_or("(no common name)")
            .to_string(),
        Err(_) => "(unreadable certificate)".into(),
    }
}
