//! `replicim rcopy`: 3PAR remote-copy commands against one array's CIM-XML
//! server.

use std::io::IsTerminal;

use serde::Serialize;

use crate::cim::client::Client;
use crate::core::Command;
use crate::rcopy::console::{Console, GroupRow, SnapRow, Wait};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Commands: showrcopy [GROUP] | creatercopygroup G TARGET sync|periodic[:MS] | admitrcopyvv VV G TARGET:VV | dismissrcopyvv VV G | removercopygroup [-f] [-removevv] G | startrcopygroup G | stoprcopygroup G | verifyrcopy [-repair] G | syncrcopy [-n NAME] [--pre CMD] [--post CMD] G | setrcopygroup failover|restore|reverse G | setrcopygroup recover [-full] G | setrcopygroup mode sync|periodic G | setrcopygroup pol auto_recover|no_auto_recover|fail_wrt_on_err|no_fail_wrt_on_err|max_lag=DUR|max_backlog=SIZE|retain=N G | setrcopygroup period SECS[s|m|h|d] G | showvv [-snap] | createvv VV SIZE[M|G|T] | removevv [-f] VV | createsv SV VV | createvvcopy -p VV [-online] COPY | promotesv SV | updatevv NAME | promotevvcopy COPY"
)]
pub struct Args {
    /// The array's CIM-XML endpoint: http://127.0.0.1:5988, or
    /// https://127.0.0.1:5989 (with --ca-file, --pin, --client-dir or
    /// --insecure).
    #[arg(long)]
    url: String,
    /// HTTP Basic user (default admin when a password is given).
    #[arg(long)]
    user: Option<String>,
    /// A file whose first line is the password.
    #[arg(long, value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,
    /// The password on the command line: for demos only, as every user of
    /// this machine can read it in the process list. Prefer
    /// --password-file or the REPLICIM_PASSWORD environment variable.
    #[arg(long)]
    password: Option<String>,
    /// HTTPS: trust the server if a CA in this PEM file signed its
    /// certificate (the array's DATA_DIR/tls/ca.pem).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// HTTPS: trust the server whose certificate has this SHA-256
    /// fingerprint (sha256:HEX).
    #[arg(long, value_name = "FINGERPRINT")]
    pin: Option<String>,
    /// HTTPS: a client directory the array issued (`serve --issue-client`):
    /// its certificate stands in for the password, and its ca-cert.pem
    /// checks the server unless --ca-file or --pin is given.
    #[arg(long, value_name = "DIR")]
    client_dir: Option<std::path::PathBuf>,
    /// HTTPS without checking the server's certificate: encrypted, but to
    /// whoever answers.
    #[arg(long)]
    insecure: bool,
    /// Machine-readable output (showrcopy: the groups; other commands: a status object).
    #[arg(long)]
    json: bool,
    /// The rcopy command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// How rcopy checks an HTTPS server, and its client certificate.
fn tls_config(a: &Args) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use crate::pki::ServerCheck;
    let dir_ca = a.client_dir.as_ref().map(|d| d.join("ca-cert.pem"));
    let check = match (&a.ca_file, &a.pin, a.insecure) {
        (Some(ca), None, false) => ServerCheck::Ca(ca.clone()),
        (None, Some(pin), false) => ServerCheck::Pin(pin.clone()),
        (None, None, true) => ServerCheck::Insecure,
        (None, None, false) => match dir_ca {
            Some(ca) => ServerCheck::Ca(ca),
            None => {
                return Err(
                    "https:// needs a way to check the array's certificate: --ca-file \
                     DATA_DIR/tls/ca.pem, --pin sha256:..., --client-dir DIR, or --insecure \
                     to skip the check"
                        .into(),
                )
            }
        },
        _ => return Err("give one of --ca-file, --pin and --insecure".into()),
    };
    if a.insecure {
        eprintln!("replicim rcopy: --insecure: the server's certificate is not checked");
    }
    let client = a
        .client_dir
        .as_ref()
        .map(|d| (d.join("client-cert.pem"), d.join("client-key.pem")));
    crate::pki::client_config(
        &check,
        client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
}

#[derive(Serialize)]
struct Show<'a> {
    system: &'a str,
    groups: &'a [GroupRow],
}

pub fn main(a: Args) -> i32 {
    match run(&a) {
        Ok(()) => 0,
        Err(e) => {
            if a.json {
                println!("{}", serde_json::json!({ "ok": false, "error": e }));
            } else {
                eprintln!("replicim rcopy: {e}");
            }
            1
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let (https, addr) = match a.url.split_once("://") {
        Some(("http", rest)) => (false, rest.trim_end_matches('/')),
        Some(("https", rest)) => (true, rest.trim_end_matches('/')),
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}:// is not a CIM-XML endpoint; use http:// or https://"
            ))
        }
        None => (false, a.url.as_str()),
    };
    let password = super::password(a.password.as_deref(), a.password_file.as_deref())?;
    let creds =
        match (&a.user, &password) {
            (u, Some(p)) => Some((u.as_deref().unwrap_or("admin"), p.as_str())),
            (Some(_), None) => return Err(
                "--user needs a password: --password-file FILE, REPLICIM_PASSWORD, or --password"
                    .into(),
            ),
            (None, None) => None,
        };
    let mut client = Client::new(addr, creds);
    if https {
        client = client.with_tls(tls_config(a)?);
    } else if a.ca_file.is_some() || a.pin.is_some() || a.client_dir.is_some() || a.insecure {
        return Err("--ca-file, --pin, --client-dir and --insecure are for https:// URLs".into());
    }
    let mut console = Console::connect(client)?;
    let words: Vec<&str> = a.command.iter().map(String::as_str).collect();
    if words[0] == "showrcopy" {
        let mut groups = console.show()?;
        if let Some(g) = words.get(1) {
            groups.retain(|r| r.name == *g);
            if groups.is_empty() {
                return Err(format!(
                    "remote-copy group {g} does not exist on {}",
                    console.array()
                ));
            }
        }
        if a.json {
            let show = Show {
                system: console.array(),
                groups: &groups,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&show).map_err(|e| e.to_string())?
            );
        } else {
            print!("{}", render(console.array(), &groups));
        }
        return Ok(());
    }
    if words == ["showvv", "-snap"] {
        let rows = console.show_snapshots()?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
            );
        } else {
            print!("{}", render_snapshots(&rows));
        }
        return Ok(());
    }
    if words[0] == "showvv" {
        let rows = console.show_volumes()?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
            );
        } else {
            println!("{:<31} {:>10} {:<24} Groups", "Name", "Size_MiB", "Role");
            for r in &rows {
                println!(
                    "{:<31} {:>10} {:<24} {}",
                    r.name,
                    r.size_mib,
                    r.role,
                    if r.groups.is_empty() {
                        "-".to_string()
                    } else {
                        r.groups.join(",")
                    }
                );
            }
            println!("{} volumes", rows.len());
        }
        return Ok(());
    }
    let (hooks, words) = take_hooks(&words)?;
    let cmd = crate::rcopy::parse(&words)?;
    if hooks.pre.is_some() || hooks.post.is_some() {
        return sync_point(&mut console, &cmd, &hooks, a.json);
    }
    let bar = if !a.json && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(100);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let r = console.run(&cmd, Wait::Yes, &mut |pct, left| {
        if let Some(b) = &bar {
            b.set_position(u64::from(pct));
            b.set_message(format!("{} remaining", indicatif::HumanBytes(left)));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    r?;
    if let Command::Verify { group, .. } = &cmd {
        // The verdict, from the group the verify ran on.
        let row = console.show()?.into_iter().find(|g| g.name == *group);
        if let Some(v) = row.and_then(|g| g.verify) {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
                return Ok(());
            }
            println!("{group}: verify {}", verify_text(&v));
        }
        return Ok(());
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "ok": true, "command": a.command.join(" ") })
        );
    }
    Ok(())
}

/// `syncrcopy --pre CMD --post CMD`: commands run on this host around the
/// array's point (Recovery Manager's VSS freeze and thaw).
#[derive(Default)]
struct Hooks {
    pre: Option<String>,
    post: Option<String>,
}

/// Takes `--pre CMD` and `--post CMD` out of a syncrcopy command line.
fn take_hooks<'a>(words: &[&'a str]) -> Result<(Hooks, Vec<&'a str>), String> {
    let mut hooks = Hooks::default();
    let mut rest = Vec::new();
    let mut it = words.iter().copied();
    while let Some(w) = it.next() {
        let slot = match w {
            "--pre" => &mut hooks.pre,
            "--post" => &mut hooks.post,
            _ => {
                rest.push(w);
                continue;
            }
        };
        let cmd = it
            .next()
            .ok_or_else(|| format!("{w} needs a command (quote it: {w} 'fsfreeze -f /mnt')"))?;
        if slot.replace(cmd.to_string()).is_some() {
            return Err(format!("{w} is given twice"));
        }
    }
    let hooked = hooks.pre.is_some() || hooks.post.is_some();
    if hooked && rest.first() != Some(&"syncrcopy") {
        return Err("--pre and --post are options of syncrcopy".into());
    }
    Ok((hooks, rest))
}

/// How long the point may wait for a running cycle to end, once the
/// application is frozen: the bound on the freeze the array adds.
const POINT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one hook with `sh -c`; an error says how it ended.
fn run_hook(what: &str, cmd: &str) -> Result<(), String> {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map_err(|e| format!("{what} command `{cmd}`: cannot run sh: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} command `{cmd}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The freeze / point / thaw cycle: the pre command, then the array's
/// point (retried while a running cycle makes the array busy, for at most
/// `POINT_WAIT`), then the post command, which always runs. The point is
/// not asked for when the pre command failed (the application may not be
/// frozen).
fn sync_point(
    console: &mut Console,
    cmd: &Command,
    hooks: &Hooks,
    json: bool,
) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let point = match hooks.pre.as_deref().map(|c| run_hook("--pre", c)) {
        Some(Err(e)) => Err(format!("{e}; no point was taken")),
        _ => {
            let asked = std::time::Instant::now();
            loop {
                match console.run(cmd, Wait::No, &mut |_, _| {}) {
                    Err(e) if e.contains("is busy") && asked.elapsed() < POINT_WAIT => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) if e.contains("is busy") => {
                        break Err(format!(
                            "no point: a cycle was still running after {} ms ({e})",
                            POINT_WAIT.as_millis()
                        ))
                    }
                    r => break r,
                }
            }
        }
    };
    let frozen = t0.elapsed();
    let post = hooks.post.as_deref().map(|c| run_hook("--post", c));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": point.is_ok() && !matches!(post, Some(Err(_))),
                "point": point.as_ref().err(),
                "post": post.as_ref().and_then(|p| p.as_ref().err()),
                "frozen_ms": frozen.as_millis() as u64,
            })
        );
    } else if point.is_ok() {
        eprintln!(
            "point taken {} ms after the pre command began",
            frozen.as_millis()
        );
    }
    match (point, post) {
        (Err(e), Some(Err(p))) => Err(format!("{e}; and {p}")),
        (Err(e), _) => Err(e),
        (Ok(()), Some(Err(p))) => Err(format!("the point was taken, but {p}")),
        (Ok(()), _) => Ok(()),
    }
}

/// showvv -snap's table: name, base volume, the group keeping it, the
/// point's time and name, and its cost.
pub fn render_snapshots(rows: &[SnapRow]) -> String {
    let dash = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.base.clone(),
                dash(&r.retained_by),
                dash(&r.point_time),
                dash(&r.point_name),
                format!("{:.1}", r.saved_bytes as f64 / (1u64 << 20) as f64),
            ]
        })
        .collect();
    let mut out = table(
        "",
        &[
            "Name",
            "Base",
            "RetainedBy",
            "PointTime",
            "PointName",
            "Saved_MiB",
        ],
        &body,
    );
    out.push_str(&format!("{} snapshots\n", rows.len()));
    out
}

/// One line on a verify: its state, what it compared, and what differs.
pub fn verify_text(v: &crate::rcopy::console::VerifyRow) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut t = format!(
        "{}, {:.1} of {:.1} MiB compared in {}.{:03} s, {} blocks differ",
        v.status,
        mib(v.compared_bytes),
        mib(v.total_bytes),
        v.ms / 1000,
        v.ms % 1000,
        v.differing_blocks
    );
    if !v.differing.is_empty() {
        let shown: Vec<&str> = v.differing.iter().take(16).map(String::as_str).collect();
        t.push_str(&format!(
            " ({}{})",
            shown.join(" "),
            if v.differing.len() > 16 { " ..." } else { "" }
        ));
    }
    t
}

/// showrcopy's group and volume tables.
pub fn render(system: &str, groups: &[GroupRow]) -> String {
    let mut out =
        format!("Remote Copy System Information\nSystem: {system}\n\nGroup Information\n");
    if groups.is_empty() {
        out.push_str("\nNo remote-copy groups.\n");
        return out;
    }
    for g in groups {
        let mut options = g.options.clone();
        if g.mode == "Periodic" {
            options.push(format!("period={}s", g.period_s));
        }
        out.push('\n');
        out.push_str(&table(
            "",
            &["Name", "Target", "Status", "Role", "Mode", "Options"],
            &[vec![
                g.name.clone(),
                g.target.clone(),
                g.status.clone(),
                g.role.clone(),
                g.mode.clone(),
                options.join(","),
            ]],
        ));
        let rows: Vec<Vec<String>> = g
            .volumes
            .iter()
            .map(|v| {
                vec![
                    v.local_vv.clone(),
                    v.remote_vv.clone(),
                    match (v.sync_status.as_str(), v.percent_synced) {
                        ("Syncing", Some(p)) => format!("Syncing ({p}%)"),
                        (s, _) => s.to_string(),
                    },
                    v.last_sync_time.clone().unwrap_or_else(|| "NA".into()),
                ]
            })
            .collect();
        out.push_str(&table(
            "  ",
            &["LocalVV", "RemoteVV", "SyncStatus", "LastSyncTime"],
            &rows,
        ));
        if g.status == "Started" && g.mode != "Sync" {
            out.push_str(&format!(
                "  Lag: {} KiB, oldest unapplied write {}.{:03} s old\n",
                g.lag_bytes.div_ceil(1024),
                g.lag_ms / 1000,
                g.lag_ms % 1000
            ));
        }
        if let Some(e) = &g.error {
            out.push_str(&format!("  Error: {e}\n"));
        }
        if let Some(v) = &g.verify {
            out.push_str(&format!("  Verify: {}\n", verify_text(v)));
        }
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn table(indent: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = indent.to_string();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.push('\n');
        l
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}
