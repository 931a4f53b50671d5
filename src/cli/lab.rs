//! `replicim lab`: the supervisor of two arrays, and its remote controls.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;

use crate::lab::{self, control, Lab, Options, Provisioned};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lab's directory (configurations, data, logs, control socket).
    /// Default: $TMPDIR/replicim-lab.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// A file whose first line is the HTTP Basic password of user admin
    /// (also REPLICIM_PASSWORD; default: generated once and kept in
    /// DIR/password and DIR/credentials, mode 0600).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The password on the command line: for demos only, as every user of
    /// this machine can read it in the process list.
    #[arg(long)]
    password: Option<String>,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// SIGKILL an array's process (an array failure).
    Kill { site: String },
    /// Restart an array's process from its data directory.
    Start { site: String },
    /// Cut, restore or throttle the replication link at the switch.
    Link {
        #[command(subcommand)]
        what: LinkAction,
    },
    /// Which arrays run, and the link's state.
    Status,
}

#[derive(Subcommand, Debug)]
enum LinkAction {
    Down,
    Up,
    /// Limit each direction to BYTES_PER_SEC, or `off`.
    Throttle {
        rate: String,
    },
}

pub fn main(a: Args) -> i32 {
    let dir = a.dir.clone().unwrap_or_else(lab::default_dir);
    let request = match &a.action {
        None => {
            return match crate::cli::password(a.password.as_deref(), a.password_file.as_deref()) {
                Ok(p) => supervise(dir, p),
                Err(e) => {
                    eprintln!("replicim lab: {e}");
                    2
                }
            }
        }
        Some(Action::Kill { site }) => format!("kill {site}"),
        Some(Action::Start { site }) => format!("start {site}"),
        Some(Action::Link { what }) => match what {
            LinkAction::Down => "link down".into(),
            LinkAction::Up => "link up".into(),
            LinkAction::Throttle { rate } => format!("link throttle {rate}"),
        },
        Some(Action::Status) => "status".into(),
    };
    match control::request(&dir, &request) {
        Ok(t) => {
            println!("{t}");
            0
        }
        Err(e) => {
            eprintln!("replicim lab: {e}");
            1
        }
    }
}

fn supervise(dir: PathBuf, password: Option<String>) -> i32 {
    if control::request(&dir, "status").is_ok() {
        eprintln!(
            "replicim lab: a lab is already running in {}; stop it with Ctrl-C or use another --dir",
            dir.display()
        );
        return 1;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("replicim lab: cannot find my own binary: {e}");
            return 1;
        }
    };
    let mut opts = Options::new(&dir, &exe);
    opts.password = password;
    println!("starting site-a and site-b in {} ...", dir.display());
    let lab = match Lab::start(opts) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("replicim lab: {e}");
            return 1;
        }
    };
    match lab.provision() {
        Ok(Provisioned::Created) => {
            println!("created {} and waited until it was synced", lab::GROUP)
        }
        Ok(Provisioned::Restarted) => println!(
            "{} exists already (state reused from {}); restarted it and waited until it was synced",
            lab::GROUP,
            dir.display()
        ),
        Ok(Provisioned::Reused(role, status)) => println!(
            "{} exists already (state reused from {}); site-a is {role}, {status}: left as it is",
            lab::GROUP,
            dir.display()
        ),
        Err(e) => {
            eprintln!("replicim lab: provisioning {}: {e}", lab::GROUP);
            lab.stop();
            return 1;
        }
    }
    let sock = control::socket_path(&dir);
    let _ = std::fs::remove_file(&sock);
    let listener = {
        let _guard = lab.rt.enter();
        match tokio::net::UnixListener::bind(&sock) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("replicim lab: {}: {e}", sock.display());
                lab.stop();
                return 1;
            }
        }
    };
    lab.rt.spawn(control::serve(lab.clone(), listener));
    print!("{}", lab.banner());
    let stopped = lab.rt.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Some(())
    });
    if stopped.is_none() {
        eprintln!("replicim lab: cannot watch for signals");
    }
    println!("stopping both arrays ...");
    let _ = std::fs::remove_file(&sock);
    lab.stop();
    println!("stopped; state kept in {}", dir.display());
    0
}
