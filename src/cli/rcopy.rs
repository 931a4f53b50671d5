//! `replicim rcopy`: 3PAR remote-copy commands against one array's CIM-XML
//! server.

use std::io::IsTerminal;

use serde::Serialize;

use crate::cim::client::Client;
use crate::rcopy::console::{Console, GroupRow, Wait};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Commands: showrcopy [GROUP] | creatercopygroup G TARGET sync|periodic[:MS] | admitrcopyvv VV G TARGET:VV | dismissrcopyvv VV G | removercopygroup G | startrcopygroup G | stoprcopygroup G | syncrcopy G | setrcopygroup failover|restore|reverse G | setrcopygroup recover [-full] G | setrcopygroup mode sync|periodic G | setrcopygroup pol auto_recover|no_auto_recover|fail_wrt_on_err|no_fail_wrt_on_err G"
)]
pub struct Args {
    /// The array's CIM-XML endpoint, e.g. http://127.0.0.1:5988.
    #[arg(long)]
    url: String,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// Machine-readable output (showrcopy: the groups; other commands: a status object).
    #[arg(long)]
    json: bool,
    /// The rcopy command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
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
    let addr = match a.url.split_once("://") {
        Some(("http", rest)) => rest.trim_end_matches('/'),
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}:// is not supported by rcopy yet; use the array's http:// endpoint"
            ))
        }
        None => a.url.as_str(),
    };
    let creds = match (&a.user, &a.password) {
        (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
        (None, None) => None,
        _ => return Err("give both --user and --password, or neither".into()),
    };
    let mut console = Console::connect(Client::new(addr, creds))?;
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
    let cmd = crate::rcopy::parse(&words)?;
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
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "ok": true, "command": a.command.join(" ") })
        );
    }
    Ok(())
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
