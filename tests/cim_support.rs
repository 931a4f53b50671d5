//! A small test provider and an in-process server for the CIM-XML tests.
//!
//! TST_Widget (keys Name and Id, one property of most CIM types, a Reset
//! method), its subclass TST_Gadget, and the association TST_Link are
//! served by `TestProvider`, which accepts CreateInstance, ModifyInstance
//! and DeleteInstance. A "Test Widgets" profile conforms to widget a/1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use replicim::cim::dispatch::{Ctx, MethodResult, Provider};
use replicim::cim::model::{CimType, Class, DateTime, Instance, Method, Name, ObjectPath, Value};
use replicim::cim::server::{self, ServerConfig, State};
use replicim::cim::CimError;
use replicim::cli::serve;

pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret-pass";

pub const TEST_MOF: &str = r#"
[Version("1.0.0"), Description("A test widget.")]
class TST_Widget : CIM_ManagedElement {
    [Key, Description("Widget name.")] string Name;
    [Key, Description("Widget number.")] uint32 Id;
    uint32 Size;
    string Note;
    boolean Flag;
    sint64 Offset;
    real64 Ratio;
    char16 Letter;
    datetime Made;
    uint16 States[];
    [ValueMap{"0","1"}, Values{"Off","On"}] uint16 Power;
    [Description("Resets the widget.")]
    uint32 Reset([In] boolean Force, [In] uint16 Count, [In(false), Out] string Result, [In] TST_Widget REF Peer);
};

[Version("1.0.0"), Description("A widget with more.")]
class TST_Gadget : TST_Widget {
    string Extra;
};

[Association, Version("1.0.0"), Description("Two linked widgets.")]
class TST_Link {
    [Key] TST_Widget REF Left;
    [Key] TST_Widget REF Right;
    string Label;
};
"#;

fn s(v: &str) -> Option<Value> {
    Some(Value::String(v.into()))
}

pub fn widget(class: &str, name: &str, id: u32, size: u32) -> Instance {
    Instance::new(class)
        .with("Name", CimType::String, s(name))
        .with("Id", CimType::Uint32, Some(Value::Uint32(id)))
        .with("Size", CimType::Uint32, Some(Value::Uint32(size)))
        .with(
            "Note",
            CimType::String,
            s(&format!("note <{name}> & \"{id}\"")),
        )
        .with("Flag", CimType::Boolean, Some(Value::Boolean(id % 2 == 1)))
        .with(
            "Offset",
            CimType::Sint64,
            Some(Value::Sint64(-(id as i64) * 1000)),
        )
        .with(
            "Ratio",
            CimType::Real64,
            Some(Value::Real64(id as f64 / 4.0)),
        )
        .with("Letter", CimType::Char16, Some(Value::Char16('w')))
        .with(
            "Made",
            CimType::Datetime,
            Some(Value::Datetime(
                DateTime::parse("20261122080000.000000+060").unwrap(),
            )),
        )
        .with(
            "States",
            CimType::Uint16,
            Some(Value::Array(vec![
                Some(Value::Uint16(2)),
                Some(Value::Uint16(5)),
            ])),
        )
        .with("Power", CimType::Uint16, Some(Value::Uint16(1)))
}

pub fn widget_path(name: &str, id: u32) -> ObjectPath {
    ObjectPath {
        host: None,
        namespace: Some("root/cimv2".into()),
        class: Name::new("TST_Widget"),
        keys: vec![
            (Name::new("Name"), Value::String(name.into())),
            (Name::new("Id"), Value::Uint32(id)),
        ],
    }
}

/// Serves TST_Widget, TST_Gadget and TST_Link from memory.
pub struct TestProvider {
    widgets: Mutex<Vec<Instance>>,
    resets: Mutex<u32>,
}

impl TestProvider {
    pub fn new(extra_widgets: u32) -> TestProvider {
        let mut w = vec![
            widget("TST_Widget", "a", 1, 10),
            widget("TST_Widget", "b", 2, 20),
            widget("TST_Gadget", "g", 3, 30),
        ];
        w[2].set("Extra", CimType::String, s("more"));
        for i in 0..extra_widgets {
            w.push(widget("TST_Widget", &format!("bulk{i:05}"), 1000 + i, i));
        }
        TestProvider {
            widgets: Mutex::new(w),
            resets: Mutex::new(0),
        }
    }
}

impl Provider for TestProvider {
    fn classes(&self) -> Vec<(String, Name)> {
        ["TST_Widget", "TST_Gadget", "TST_Link"]
            .iter()
            .map(|c| ("root/cimv2".to_string(), Name::new(c)))
            .collect()
    }

    fn enumerate(&self, _ctx: &Ctx, class: &Name) -> Result<Vec<Instance>, CimError> {
        if class.is("TST_Link") {
            let mut p = widget_path("b", 2);
            p.namespace = None;
            return Ok(vec![Instance::new("TST_Link")
                .with(
                    "Left",
                    CimType::Reference(None),
                    Some(Value::reference(widget_path("a", 1))),
                )
                .with("Right", CimType::Reference(None), Some(Value::reference(p)))
                .with("Label", CimType::String, s("a-b"))]);
        }
        Ok(self
            .widgets
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.class == *class)
            .cloned()
            .collect())
    }

    fn create(
        &self,
        _ctx: &Ctx,
        class: &Class,
        instance: Instance,
    ) -> Result<ObjectPath, CimError> {
        let path = instance.path(class, "root/cimv2", None);
        if path.keys.len() != 2 {
            return Err(CimError::invalid_parameter("Name and Id are required"));
        }
        let mut w = self.widgets.lock().unwrap();
        if w.iter()
            .any(|x| x.path(class, "root/cimv2", None).same_instance(&path))
        {
            return Err(CimError::already_exists(format!("{path}")));
        }
        w.push(instance);
        Ok(path)
    }

    fn modify(
        &self,
        _ctx: &Ctx,
        class: &Class,
        path: &ObjectPath,
        instance: Instance,
        list: Option<&[String]>,
    ) -> Result<(), CimError> {
        let mut w = self.widgets.lock().unwrap();
        let cur = w
            .iter_mut()
            .find(|x| x.path(class, "root/cimv2", None).same_instance(path))
            .ok_or_else(|| CimError::not_found("gone"))?;
        for p in instance.properties {
            if p.is_key() || p.name.is("Name") || p.name.is("Id") {
                continue;
            }
            if list.is_some_and(|l| !l.iter().any(|x| p.name.is(x))) {
                continue;
            }
            cur.set(p.name.as_str(), p.ty.clone(), p.value.clone());
        }
        Ok(())
    }

    fn delete(&self, _ctx: &Ctx, class: &Class, path: &ObjectPath) -> Result<(), CimError> {
        let mut w = self.widgets.lock().unwrap();
        let before = w.len();
        w.retain(|x| !x.path(class, "root/cimv2", None).same_instance(path));
        if w.len() == before {
            return Err(CimError::not_found("gone"));
        }
        Ok(())
    }

    fn invoke(
        &self,
        _ctx: &Ctx,
        target: &ObjectPath,
        method: &Method,
        params: Vec<(Name, Option<Value>)>,
    ) -> Result<MethodResult, CimError> {
        if !method.name.is("Reset") {
            return Err(CimError::method_not_available(method.name.to_string()));
        }
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k.is(n))
                .and_then(|(_, v)| v.clone())
        };
        let force = get("Force").and_then(|v| v.as_bool()).unwrap_or(false);
        let count = get("Count").and_then(|v| v.as_u64()).unwrap_or(1);
        let peer = get("Peer").and_then(|v| v.as_ref_path().map(|p| p.class.to_string()));
        let mut r = self.resets.lock().unwrap();
        *r += count as u32;
        Ok(MethodResult {
            return_value: Value::Uint32(0),
            out: vec![(
                Name::new("Result"),
                Value::String(format!(
                    "{} reset {count} times, force={force}, peer={}",
                    target.class,
                    peer.unwrap_or_else(|| "none".into())
                )),
            )],
        })
    }
}

/// A running server; stops when dropped.
pub struct TestServer {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub cert: std::path::PathBuf,
    /// The server's CA and keys (`replicim::pki::issue_client` makes
    /// client certificates from it).
    pub pki: replicim::pki::Paths,
    stop: Option<tokio::sync::broadcast::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start(extra_widgets: u32, config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let cim = serve::build("testhost", &[("test.mof".into(), TEST_MOF.into())]).unwrap();
        let mut dispatcher = cim.dispatcher;
        dispatcher
            .register(Arc::new(TestProvider::new(extra_widgets)))
            .unwrap();
        let profile = cim.interop.register_profile(1, "Test Widgets", "1.0.0");
        cim.interop.conforms(profile.clone(), widget_path("a", 1));
        cim.interop.references(
            replicim::cim::interop::profile_path("replicim:profile:SNIA:Server:1.6.1"),
            profile,
        );
        let state = Arc::new(State::new(Arc::new(dispatcher), config));
        let pki = replicim::pki::ensure(&dir.path().join("tls"), "testhost", "testhost").unwrap();
        let tls = server::tls_acceptor(&pki.cert, &pki.key, Some(&pki.ca)).unwrap();
        let cert = pki.ca.clone();
        let pki_paths = pki.clone();
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stop = stop_tx.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx
                    .send((l1.local_addr().unwrap(), l2.local_addr().unwrap()))
                    .unwrap();
                let (mut s1, mut s2) = (stop.subscribe(), stop.subscribe());
                let a = tokio::spawn(server::run(l1, None, state.clone(), async move {
                    let _ = s1.recv().await;
                }));
                let b = tokio::spawn(server::run(l2, Some(tls), state, async move {
                    let _ = s2.recv().await;
                }));
                let _ = a.await;
                let _ = b.await;
            });
        });
        let (http, https) = addr_rx.recv().unwrap();
        TestServer {
            http,
            https,
            cert,
            pki: pki_paths,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn with_auth(extra_widgets: u32) -> TestServer {
        TestServer::start(
            extra_widgets,
            ServerConfig {
                credentials: Some((USER.into(), PASSWORD.into())),
                ..ServerConfig::default()
            },
        )
    }

    /// Stops accepting, drains, and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a command, returning (status, stdout, stderr); the Python clients
/// get no CA-bundle override, so `verify` settings take effect.
pub fn run(cmd: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .env("PYTHONWARNINGS", "error::UserWarning")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {cmd}: {e} (install the test clients: see .ci/run)")
        });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
