//! A small blocking CIM-XML client (HTTP/1.1 keep-alive over TCP, or TLS
//! with rustls), used by the CIM-level conformance runner and the `rcopy`
//! admin client.
//!
//! It writes requests with the same encoder the server uses and reads
//! replies with the same decoder, so it speaks exactly the dialect the
//! server was tested against with pywbem and wbemcli.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use super::error::CimError;
use super::model::{Instance, ObjectPath, Value};
use super::xml::decode::{self, Element, Limits};
use super::xml::{call, encode};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("talking to {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} answered HTTP {1}: {2}")]
    Http(String, u16, String),
    #[error("{0} sent a reply that is not valid CIM-XML: {1}")]
    Protocol(String, String),
    #[error("{0}")]
    Cim(CimError),
}

/// The largest reply body read (a hostile server cannot make the client
/// allocate more).
pub const MAX_REPLY: usize = 512 << 20;

/// A connection to one server.
pub struct Client {
    addr: String,
    auth: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<BufReader<Conn>>,
    next_id: u64,
}

/// The longest header line read.
const MAX_LINE: u64 = 64 * 1024;

/// Reads one line of at most `MAX_LINE` bytes.
fn line_of(conn: &mut BufReader<Conn>, out: &mut String) -> std::io::Result<usize> {
    let n = conn.take(MAX_LINE).read_line(out)?;
    if n as u64 == MAX_LINE && !out.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a reply header line above 64 KiB",
        ));
    }
    Ok(n)
}

/// A socket, in clear or inside TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The result of an extrinsic method call.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodReturn {
    pub return_value: Value,
    pub out: Vec<(String, Value)>,
}

impl MethodReturn {
    pub fn out(&self, name: &str) -> Option<&Value> {
        self.out
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// A method parameter to send.
pub enum Param<'a> {
    /// A typed scalar or array.
    Value(&'a str, Value),
    /// A reference.
    Ref(&'a str, ObjectPath),
}

impl Client {
    /// `addr` is "host:port"; `credentials` enable HTTP Basic.
    pub fn new(addr: &str, credentials: Option<(&str, &str)>) -> Client {
        Client {
            addr: addr.to_string(),
            auth: credentials
                .map(|(u, p)| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))),
            tls: None,
            conn: None,
            next_id: 1,
        }
    }

    /// The same over HTTPS: `tls` says how the server is checked (and
    /// carries a client certificate if there is one).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Client {
        self.tls = Some(tls);
        self
    }

    fn connect(&self) -> Result<Conn, ClientError> {
        let s = TcpStream::connect(&self.addr)
            .map_err(|e| ClientError::Connect(self.addr.clone(), e))?;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
        let Some(tls) = &self.tls else {
            return Ok(Conn::Plain(s));
        };
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            ClientError::Connect(
                self.addr.clone(),
                std::io::Error::other(format!("{host}: {e}")),
            )
        })?;
        let c = rustls::ClientConnection::new(tls.clone(), name)
            .map_err(|e| ClientError::Connect(self.addr.clone(), std::io::Error::other(e)))?;
        let mut t = rustls::StreamOwned::new(c, s);
        // Finish the handshake here, so that a refused certificate is a
        // connection error with its reason.
        while t.conn.is_handshaking() {
            t.conn
                .complete_io(&mut t.sock)
                .map_err(|e| ClientError::Connect(self.addr.clone(), e))?;
        }
        Ok(Conn::Tls(Box::new(t)))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn post(&mut self, method: &str, object: &str, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        // One retry on a fresh connection: a kept-alive one may have closed.
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(BufReader::new(self.connect()?));
            }
            match self.exchange(method, object, body) {
                Ok(r) => return Ok(r),
                Err(ClientError::Io(..)) if attempt == 0 => self.conn = None,
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
        unreachable!("the loop returns")
    }

    fn exchange(
        &mut self,
        method: &str,
        object: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let addr = self.addr.clone();
        let io = |e| ClientError::Io(addr.clone(), e);
        let conn = self.conn.as_mut().expect("connected");
        let mut head = format!(
            "POST /cimom HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\nCIMOperation: MethodCall\r\nCIMMethod: {method}\r\nCIMObject: {object}\r\n",
            body.len()
        );
        if let Some(a) = &self.auth {
            head.push_str(&format!("Authorization: Basic {a}\r\n"));
        }
        head.push_str("\r\n");
        let s = conn.get_mut();
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        s.write_all(&request).map_err(io)?;
        s.flush().map_err(io)?;
        let mut status_line = String::new();
        if line_of(conn, &mut status_line).map_err(io)? == 0 {
            return Err(ClientError::Io(
                addr.clone(),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"),
            ));
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut length, mut chunked, mut close, mut cim_error) =
            (None, false, false, String::new());
        loop {
            let mut line = String::new();
            line_of(conn, &mut line).map_err(io)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    "cimerror" => cim_error = v.to_string(),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                line_of(conn, &mut size).map_err(io)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .map_err(|_| {
                        ClientError::Protocol(addr.clone(), format!("bad chunk size {size:?}"))
                    })?;
                if body.len() + n > MAX_REPLY {
                    return Err(ClientError::Protocol(
                        addr.clone(),
                        format!("a reply above {MAX_REPLY} bytes"),
                    ));
                }
                if n == 0 {
                    let mut trailer = String::new();
                    while line_of(conn, &mut trailer).map_err(io)? > 2 {
                        trailer.clear();
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + n, 0);
                conn.read_exact(&mut body[start..]).map_err(io)?;
                let mut crlf = [0u8; 2];
                conn.read_exact(&mut crlf).map_err(io)?;
            }
        } else if let Some(n) = length {
            if n > MAX_REPLY {
                return Err(ClientError::Protocol(
                    addr.clone(),
                    format!("a reply of {n} bytes (above {MAX_REPLY})"),
                ));
            }
            body.resize(n, 0);
            conn.read_exact(&mut body).map_err(io)?;
        } else {
            conn.take(MAX_REPLY as u64 + 1)
                .read_to_end(&mut body)
                .map_err(io)?;
            if body.len() > MAX_REPLY {
                return Err(ClientError::Protocol(
                    addr.clone(),
                    format!("a reply above {MAX_REPLY} bytes"),
                ));
            }
            close = true;
        }
        if close {
            self.conn = None;
        }
        if status != 200 {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            return Err(ClientError::Http(
                addr.clone(),
                status,
                if cim_error.is_empty() {
                    text
                } else {
                    format!("{cim_error}: {text}")
                },
            ));
        }
        Ok(body)
    }

    fn envelope(
        &mut self,
        intrinsic: bool,
        method: &str,
        inner: impl FnOnce(&mut Vec<u8>),
    ) -> Vec<u8> {
        let id = self.next_id;
        self.next_id += 1;
        call::request(id, intrinsic, method, inner)
    }

    /// Sends an intrinsic call; returns the IRETURNVALUE element (if any).
    fn intrinsic(
        &mut self,
        ns: &str,
        method: &str,
        params: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Option<Element>, ClientError> {
        let resp = self.intrinsic_response(ns, method, params)?;
        Ok(call::ireturn(&resp).cloned())
    }

    /// Sends an intrinsic call; returns the whole response element (for
    /// calls with output parameters beside the return value).
    fn intrinsic_response(
        &mut self,
        ns: &str,
        method: &str,
        params: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Element, ClientError> {
        let body = self.envelope(true, method, |out| {
            encode::local_namespace_path(out, ns);
            params(out);
        });
        let reply = self.post(method, ns, &body)?;
        self.response(&reply, true)
    }

    fn proto(&self, e: decode::DecodeError) -> ClientError {
        ClientError::Protocol(self.addr.clone(), e.to_string())
    }

    fn response(&self, reply: &[u8], intrinsic: bool) -> Result<Element, ClientError> {
        let tree = decode::parse_tree(
            reply,
            Limits {
                max_depth: 64,
                max_elements: 10_000_000,
            },
        )
        .map_err(|e| self.proto(e))?;
        match call::response(&tree, intrinsic).map_err(|e| self.proto(e))? {
            call::Response::Ok(resp) => Ok(resp.clone()),
            call::Response::Error { code, description } => {
                // Servers (this one included) often lead with the symbol,
                // which Display adds again.
                let prefix = format!("{}: ", CimError::symbol(code));
                let desc = description
                    .strip_prefix(&prefix)
                    .unwrap_or(&description)
                    .to_string();
                Err(ClientError::Cim(CimError {
                    code,
                    description: desc,
                    not_valid: false,
                }))
            }
        }
    }

    pub fn get_instance(&mut self, path: &ObjectPath) -> Result<Instance, ClientError> {
        let ns = path
            .namespace
            .clone()
            .unwrap_or_else(|| "root/cimv2".into());
        let ret = self.intrinsic(&ns, "GetInstance", |out| {
            call::iparam_instance_name(out, "InstanceName", path)
        })?;
        call::returned_instance(ret.as_ref()).map_err(|e| self.proto(e))
    }

    /// (path, instance) of every instance of `class` in `ns`.
    pub fn enumerate_instances(
        &mut self,
        ns: &str,
        class: &str,
    ) -> Result<Vec<(ObjectPath, Instance)>, ClientError> {
        self.enumerate_instances_with(ns, class, None)
    }

    /// The same, with only the properties in `properties` (all if None):
    /// a console that reads three properties of 8,000 instances does not
    /// fetch and hold all thirty.
    pub fn enumerate_instances_with(
        &mut self,
        ns: &str,
        class: &str,
        properties: Option<&[&str]>,
    ) -> Result<Vec<(ObjectPath, Instance)>, ClientError> {
        let ret = self.intrinsic(ns, "EnumerateInstances", |out| {
            call::iparam_class(out, "ClassName", class);
            if let Some(list) = properties {
                call::iparam_string_array(out, "PropertyList", list);
            }
        })?;
        let mut out = call::named_instances(ret.as_ref()).map_err(|e| self.proto(e))?;
        for (p, _) in &mut out {
            p.namespace = Some(ns.to_string());
        }
        Ok(out)
    }

    /// Every instance of `class` in `ns`, `page` at a time
    /// (OpenEnumerateInstances, then PullInstancesWithPath until the end of
    /// the sequence), with only `properties` if given. `each` sees every
    /// page as it arrives, so a caller that keeps only what it needs holds
    /// one page, not the whole class.
    pub fn enumerate_instances_paged(
        &mut self,
        ns: &str,
        class: &str,
        properties: Option<&[&str]>,
        page: u32,
        mut each: impl FnMut(Vec<(ObjectPath, Instance)>),
    ) -> Result<(), ClientError> {
        let max = Value::Uint32(page);
        let resp = self.intrinsic_response(ns, "OpenEnumerateInstances", |out| {
            call::iparam_class(out, "ClassName", class);
            if let Some(list) = properties {
                call::iparam_string_array(out, "PropertyList", list);
            }
            call::iparam_value(out, "MaxObjectCount", &max);
        })?;
        let (items, mut context) = call::pull_page(&resp).map_err(|e| self.proto(e))?;
        each(items);
        while let Some(ctx) = context.take() {
            let resp = self.intrinsic_response(ns, "PullInstancesWithPath", |out| {
                call::iparam_value(out, "EnumerationContext", &Value::String(ctx.clone()));
                call::iparam_value(out, "MaxObjectCount", &max);
            })?;
            let (items, next) = call::pull_page(&resp).map_err(|e| self.proto(e))?;
            each(items);
            context = next;
        }
        Ok(())
    }

    /// References(object, ResultClass).
    pub fn references(
        &mut self,
        object: &ObjectPath,
        result_class: &str,
    ) -> Result<Vec<(ObjectPath, Instance)>, ClientError> {
        let ns = object
            .namespace
            .clone()
            .unwrap_or_else(|| "root/cimv2".into());
        let ret = self.intrinsic(&ns, "References", |out| {
            call::iparam_instance_name(out, "ObjectName", object);
            call::iparam_class(out, "ResultClass", result_class);
        })?;
        call::objects_with_path(ret.as_ref()).map_err(|e| self.proto(e))
    }

    /// Invokes an extrinsic method on an instance (or a class path).
    pub fn invoke(
        &mut self,
        target: &ObjectPath,
        method: &str,
        params: &[Param<'_>],
    ) -> Result<MethodReturn, ClientError> {
        let ns = target
            .namespace
            .clone()
            .unwrap_or_else(|| "root/cimv2".into());
        let body = self.envelope(false, method, |out| {
            call::method_target(out, &ns, target);
            for p in params {
                let (name, ty, v) = match p {
                    Param::Value(n, v) => (*n, v.cim_type().xml_name(), v.clone()),
                    Param::Ref(n, r) => (*n, "reference", Value::reference(r.clone())),
                };
                encode::param_value(out, name, ty, false, &v);
            }
        });
        let object = super::headers::cim_object(&ns, Some(target));
        let reply = self.post(method, &object, &body)?;
        let resp = self.response(&reply, false)?;
        let (return_value, out) = call::method_return(&resp).map_err(|e| self.proto(e))?;
        Ok(MethodReturn { return_value, out })
    }
}
