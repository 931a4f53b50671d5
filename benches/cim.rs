//! CIM-XML server benchmark, with a bare hyper server as the same-run
//! baseline.
//!
//! Run: `cargo bench --bench cim`. The servers run as child processes (this
//! binary re-executed), so the server's peak RSS is its own; the load
//! generator is a Rust hyper client with keep-alive connections. Prints a
//! Markdown table for BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{child_bare, cim_request, load, Server};

use replicim::cim::dispatch::{Ctx, Provider};
use replicim::cim::model::{CimType, Class, Instance, Name, ObjectPath, Value};
use replicim::cim::server::{self, ServerConfig, State};
use replicim::cim::CimError;

const BENCH_MOF: &str = r#"
[Version("1.0.0"), Description("A benchmark item.")]
class BNC_Item : CIM_ManagedElement {
    [Key] string Name;
    uint32 Size;
    string Vendor;
    string Model;
    string Serial;
    string Location;
    string Owner;
    string Status;
    boolean Enabled;
    uint16 States[];
};
"#;

/// Items in memory, looked up by key as a real provider would.
struct Items(Vec<Instance>, std::collections::HashMap<String, usize>);

impl Provider for Items {
    fn classes(&self) -> Vec<(String, Name)> {
        vec![("root/cimv2".into(), Name::new("BNC_Item"))]
    }
    fn enumerate(&self, _ctx: &Ctx, _class: &Name) -> Result<Vec<Instance>, CimError> {
        Ok(self.0.clone())
    }
    fn get(&self, _ctx: &Ctx, _class: &Class, path: &ObjectPath) -> Result<Instance, CimError> {
        let name = path.key("Name").and_then(Value::as_str).unwrap_or("");
        self.1
            .get(name)
            .map(|i| self.0[*i].clone())
            .ok_or_else(|| CimError::not_found(name.to_string()))
    }
}

fn item(i: usize) -> Instance {
    let s = |v: String| Some(Value::String(v));
    Instance::new("BNC_Item")
        .with("Name", CimType::String, s(format!("item-{i:06}")))
        .with("Size", CimType::Uint32, Some(Value::Uint32(i as u32)))
        .with(
            "Vendor",
            CimType::String,
            s("replicim benchmark vendor".into()),
        )
        .with("Model", CimType::String, s(format!("model-{}", i % 17)))
        .with("Serial", CimType::String, s(format!("SN{:012}", i * 7919)))
        .with(
            "Location",
            CimType::String,
            s(format!("rack {} slot {}", i / 40, i % 40)),
        )
        .with("Owner", CimType::String, s("storage operations".into()))
        .with("Status", CimType::String, s("OK".into()))
        .with(
            "Enabled",
            CimType::Boolean,
            Some(Value::Boolean(i % 3 != 0)),
        )
        .with(
            "States",
            CimType::Uint16,
            Some(Value::Array(vec![
                Some(Value::Uint16(2)),
                Some(Value::Uint16(5)),
            ])),
        )
}

/// The MOF of `n` static items (what `extra_mof` loads), each as
/// `item(i)` would build it.
fn static_mof(n: usize) -> String {
    let mut m = String::from(BENCH_MOF);
    for i in 0..n {
        m += &format!(
            "instance of BNC_Item {{ Name = \"item-{i:06}\"; Size = {i}; Vendor = \"replicim benchmark vendor\"; \
             Model = \"model-{}\"; Serial = \"SN{:012}\"; Location = \"rack {} slot {}\"; \
             Owner = \"storage operations\"; Status = \"OK\"; Enabled = {}; States = {{2, 5}}; }};\n",
            i % 17,
            i * 7919,
            i / 40,
            i % 40,
            if i % 3 != 0 { "true" } else { "false" }
        );
    }
    m
}

/// Child: the CIM server with `n` static instances from MOF, no provider.
fn child_static(n: usize) {
    let cim = replicim::cli::serve::build("bench", &[("bench.mof".into(), static_mof(n))]).unwrap();
    serve_child(cim.dispatcher);
}

/// Child: the CIM server with `n` items in namespace root/cimv2.
fn child_cim(n: usize) {
    let cim =
        replicim::cli::serve::build("bench", &[("bench.mof".into(), BENCH_MOF.into())]).unwrap();
    let mut d = cim.dispatcher;
    let items: Vec<Instance> = (0..n).map(item).collect();
    let index = (0..n).map(|i| (format!("item-{i:06}"), i)).collect();
    d.register(Arc::new(Items(items, index))).unwrap();
    serve_child(d);
}

/// Serves `d` on a free port (printed) until killed.
fn serve_child(d: replicim::cim::dispatch::Dispatcher) {
    let state = Arc::new(State::new(Arc::new(d), ServerConfig::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", l.local_addr().unwrap());
        server::run(l, None, state, std::future::pending())
            .await
            .unwrap();
    });
}

/// Child: two simulated arrays behind the SMI-S provider (the CIM
/// conformance driver), group rcg0 synced; prints "ADDR_A ADDR_B".
fn child_provider() {
    use replicim::conformance::{cim_driver::CimDriver, Driver, Step};
    let mut d = CimDriver::start().unwrap();
    d.reset().unwrap();
    d.step(&Step::parse("setup sync").unwrap()).unwrap();
    let h = d.hosts();
    println!("{} {}", h["site-a"], h["site-b"]);
    loop {
        std::thread::park();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child-cim") {
        let n = args.last().unwrap().parse().unwrap();
        return child_cim(n);
    }
    if args.iter().any(|a| a == "--child-static") {
        let n = args.last().unwrap().parse().unwrap();
        return child_static(n);
    }
    if args.iter().any(|a| a == "--child-provider") {
        return child_provider();
    }
    if args.iter().any(|a| a == "--child-bare") {
        let n: usize = args.last().unwrap().parse().unwrap();
        return child_bare(vec![b'x'; n]);
    }
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let get = cim_request(
        "GetInstance",
        "<IPARAMVALUE NAME=\"InstanceName\"><INSTANCENAME CLASSNAME=\"BNC_Item\"><KEYBINDING NAME=\"Name\"><KEYVALUE VALUETYPE=\"string\">item-000042</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>",
    );
    let enum_i = cim_request(
        "EnumerateInstances",
        "<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"BNC_Item\"/></IPARAMVALUE>",
    );
    let enum_n = cim_request(
        "EnumerateInstanceNames",
        "<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"BNC_Item\"/></IPARAMVALUE>",
    );

    // GetInstance against 1,000 items; the baseline answers with a body of
    // the same size.
    let cim = Server::spawn(&["--child-cim", "1000"]);
    let sample = rt.block_on(load(&cim.addr, &get.0, &get.1, 1, 0.2));
    let get_size = (sample.1 / sample.0.max(1)) as usize;
    let size_arg = get_size.to_string();
    let bare = Server::spawn(&["--child-bare", &size_arg]);
    for conns in [1, 4] {
        let b = rt.block_on(load(&bare.addr, &get.0, &get.1, conns, secs));
        let c = rt.block_on(load(&cim.addr, &get.0, &get.1, conns, secs));
        let rb = b.0 as f64 / b.2.as_secs_f64();
        let rc = c.0 as f64 / c.2.as_secs_f64();
        rows.push((
            format!("GetInstance, {conns} connection(s), {get_size} B reply"),
            format!("{rc:.0} req/s"),
            format!("bare hyper {rb:.0} req/s"),
            format!("{:.2}x of bare hyper", rc / rb),
        ));
    }
    // EnumerateInstances of 1,000 (same server).
    let e = rt.block_on(load(&cim.addr, &enum_i.0, &enum_i.1, 1, secs));
    // One throughput row: requests/s, MB/s of XML, reply size.
    let throughput = |what: String, r: &(u64, u64, Duration), precision: usize| {
        (
            what,
            format!(
                "{:.1} req/s, {:.0} MB/s of XML",
                r.0 as f64 / r.2.as_secs_f64(),
                r.1 as f64 / 1e6 / r.2.as_secs_f64()
            ),
            format!(
                "reply {:.precision$} MB",
                r.1 as f64 / r.0.max(1) as f64 / 1e6
            ),
            "-".to_string(),
        )
    };
    rows.push(throughput(
        "EnumerateInstances of 1,000, 1 connection".to_string(),
        &e,
        2,
    ));
    drop(cim);
    drop(bare);

    // 10,000 items: throughput and the server's peak memory.
    let cim = Server::spawn(&["--child-cim", "10000"]);
    let rss_idle = cim.peak_rss_mb();
    for conns in [1, 4] {
        let e = rt.block_on(load(&cim.addr, &enum_i.0, &enum_i.1, conns, secs));
        rows.push(throughput(
            format!("EnumerateInstances of 10,000, {conns} connection(s)"),
            &e,
            1,
        ));
    }
    let n = rt.block_on(load(&cim.addr, &enum_n.0, &enum_n.1, 1, secs));
    rows.push(throughput(
        "EnumerateInstanceNames of 10,000, 1 connection".to_string(),
        &n,
        1,
    ));
    rows.push((
        "server peak RSS while serving 10,000 instances".into(),
        format!("{:.0} MB", cim.peak_rss_mb()),
        format!("{rss_idle:.0} MB after start-up"),
        "-".into(),
    ));

    // 10,000 static instances (extra_mof), no provider: the server's own
    // instance store.
    let stat = Server::spawn(&["--child-static", "10000"]);
    let sample = rt.block_on(load(&stat.addr, &get.0, &get.1, 1, 0.2));
    let size = (sample.1 / sample.0.max(1)) as usize;
    let bare = Server::spawn(&["--child-bare", &size.to_string()]);
    let bb = rt.block_on(load(&bare.addr, &get.0, &get.1, 4, secs));
    let ss = rt.block_on(load(&stat.addr, &get.0, &get.1, 4, secs));
    let (rb, rs) = (
        bb.0 as f64 / bb.2.as_secs_f64(),
        ss.0 as f64 / ss.2.as_secs_f64(),
    );
    rows.push((
        format!("static: GetInstance of one of 10,000, 4 connections, {size} B reply"),
        format!("{rs:.0} req/s"),
        format!("bare hyper {rb:.0} req/s"),
        format!("{:.2}x of bare hyper", rs / rb),
    ));
    drop(bare);
    let ei = rt.block_on(load(&stat.addr, &enum_i.0, &enum_i.1, 1, secs));
    let en = rt.block_on(load(&stat.addr, &enum_n.0, &enum_n.1, 1, secs));
    let mbs = |r: &(u64, u64, Duration)| r.1 as f64 / 1e6 / r.2.as_secs_f64();
    rows.push(throughput(
        "static: EnumerateInstances of 10,000, 1 connection".to_string(),
        &ei,
        1,
    ));
    rows.push((
        "static: EnumerateInstanceNames of 10,000, 1 connection".to_string(),
        format!(
            "{:.1} req/s, {:.0} MB/s of XML",
            en.0 as f64 / en.2.as_secs_f64(),
            mbs(&en)
        ),
        format!("EnumerateInstances: {:.0} MB/s", mbs(&ei)),
        format!("{:.2}x the MB/s of EnumerateInstances", mbs(&en) / mbs(&ei)),
    ));
    rows.push((
        "static: server peak RSS with 10,000 instances loaded from MOF".into(),
        format!("{:.0} MB", stat.peak_rss_mb()),
        "-".into(),
        "-".into(),
    ));
    drop(stat);

    // The SMI-S provider: what consoles poll. Each request takes a fresh
    // snapshot of the (simulated) array and builds the instances from it.
    let prov = Server::spawn(&["--child-provider"]);
    let (a, b) = prov.addr.split_once(' ').unwrap();
    let vol = |sys: &str, host: &str| {
        Value::reference(replicim::provider::model_paths::vol_path(sys, host, "vol0"))
    };
    let pair = ObjectPath {
        host: None,
        namespace: None,
        class: Name::new("RCM_StorageSynchronized"),
        keys: vec![
            (Name::new("SystemElement"), vol("site-a", a)),
            (Name::new("SyncedElement"), vol("site-b", b)),
        ],
    };
    let mut name = Vec::new();
    replicim::cim::xml::encode::instance_name(&mut name, &pair);
    let name = String::from_utf8(name).unwrap();
    let get_pair = cim_request(
        "GetInstance",
        &format!("<IPARAMVALUE NAME=\"InstanceName\">{name}</IPARAMVALUE>"),
    );
    let mut vname = Vec::new();
    let vp = replicim::provider::model_paths::vol_path("site-a", a, "vol0");
    replicim::cim::xml::encode::instance_name(
        &mut vname,
        &ObjectPath {
            host: None,
            namespace: None,
            ..vp
        },
    );
    let refs = cim_request(
        "References",
        &format!(
            "<IPARAMVALUE NAME=\"ObjectName\">{}</IPARAMVALUE><IPARAMVALUE NAME=\"ResultClass\"><CLASSNAME NAME=\"CIM_StorageSynchronized\"/></IPARAMVALUE>",
            String::from_utf8(vname).unwrap()
        ),
    );
    for (what, req) in [
        ("GetInstance of a StorageSynchronized", &get_pair),
        ("References(volume, CIM_StorageSynchronized)", &refs),
    ] {
        let sample = rt.block_on(load(a, &req.0, &req.1, 1, 0.2));
        let size = (sample.1 / sample.0.max(1)) as usize;
        let bare = Server::spawn(&["--child-bare", &size.to_string()]);
        let bb = rt.block_on(load(&bare.addr, &req.0, &req.1, 4, secs));
        let pp = rt.block_on(load(a, &req.0, &req.1, 4, secs));
        let rb = bb.0 as f64 / bb.2.as_secs_f64();
        let rp = pp.0 as f64 / pp.2.as_secs_f64();
        rows.push((
            format!("provider: {what}, 4 connections, {size} B reply"),
            format!("{rp:.0} req/s"),
            format!("bare hyper {rb:.0} req/s"),
            format!("{:.2}x of bare hyper", rp / rb),
        ));
    }
    drop(prov);

    println!("| measurement | result | baseline / detail (same run) | ratio |");
    println!("|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
}
