//! The subcommands of the `replicim` binary.
//!
//! `serve` (one array: CIM-XML, NBD, link, data directory), `lab` (two
//! `serve` processes behind a fault switch, and its remote controls),
//! `rcopy` (the admin client) and `conformance --level core|cim|lab`.

pub mod lab;
pub mod rcopy;
pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::conformance::{self, core_driver::CoreDriver};

#[derive(Parser, Debug)]
#[command(
    name = "replicim",
    version,
    about = "Storage remote copy with an SMI-S Replication Services view"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run one array's CIM-XML server from a TOML configuration file.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Print this array's link fingerprint (making its link identity on
        /// first use) for its peers' `[[peer]] fingerprint`, and exit.
        #[arg(long)]
        link_fingerprint: bool,
        /// Issue a client certificate signed by this array's CA into DIR
        /// (ca-cert.pem, client-cert.pem, client-key.pem: QEMU's
        /// tls-creds-x509 layout) for NBD over TLS and HTTPS without a
        /// password, and exit.
        #[arg(long, value_name = "DIR", conflicts_with = "link_fingerprint")]
        issue_client: Option<PathBuf>,
        /// The issued certificate's name (default: client).
        #[arg(long, value_name = "NAME", requires = "issue_client")]
        client_name: Option<String>,
    },
    /// A storage admin's remote-copy client (3PAR vocabulary) over CIM-XML.
    Rcopy(rcopy::Args),
    /// Two arrays as two processes behind a fault switch, with rcg0; or,
    /// with a subcommand, a fault for the lab running in --dir.
    Lab(lab::Args),
    /// Replay the state tables (conformance/*.toml) and compare every column.
    Conformance {
        /// core: the sans-IO core in process; cim: two simulated arrays
        /// behind CIM-XML servers on 127.0.0.1, driven through the SMI-S
        /// provider; lab: two `serve` processes behind the lab's switch.
        #[arg(long, value_enum, default_value_t = Level::Core)]
        level: Level,
        /// Replay only the rows with this id (e.g. Stale, 3a) in every table.
        #[arg(long)]
        row: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Core,
    Cim,
    Lab,
}

/// The environment variable rcopy and lab read a password from.
pub const PASSWORD_ENV: &str = "REPLICIM_PASSWORD";

/// A password from `--password`, `--password-file` (its first line) or
/// REPLICIM_PASSWORD, in that order; None when none is given.
pub fn password(
    given: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, String> {
    match (given, file) {
        (Some(_), Some(_)) => Err("give --password or --password-file, not both".into()),
        (Some(p), None) => Ok(Some(p.to_string())),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if line.is_empty() {
                return Err(format!("{}: the first line is empty", f.display()));
            }
            Ok(Some(line.to_string()))
        }
        (None, None) => Ok(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())),
    }
}

/// Runs the command line; returns the process exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Cmd::Serve {
            config,
            issue_client: Some(out),
            client_name,
            ..
        } => match serve::Config::parse(&config).and_then(|c| {
            let pki = serve::pki(&c)?;
            crate::pki::issue_client(&pki, &out, client_name.as_deref().unwrap_or("client"))
        }) {
            Ok(()) => {
                println!(
                    "{}: ca-cert.pem, client-cert.pem, client-key.pem (0600)",
                    out.display()
                );
                0
            }
            Err(e) => {
                eprintln!("replicim serve: {e}");
                2
            }
        },
        Cmd::Serve {
            config,
            link_fingerprint: true,
            ..
        } => match serve::Config::parse(&config).and_then(|c| serve::link_identity(&c)) {
            Ok(id) => {
                println!("{}", id.fingerprint());
                0
            }
            Err(e) => {
                eprintln!("replicim serve: {e}");
                2
            }
        },
        Cmd::Serve { config, .. } => {
            init_logging();
            let cfg = match serve::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("replicim serve: {e}");
                    return 2;
                }
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let r = rt.block_on(serve::serve(cfg));
            // Do not wait for idle runtime threads at exit.
            rt.shutdown_background();
            match r {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("replicim serve: {e}");
                    1
                }
            }
        }
        Cmd::Rcopy(args) => rcopy::main(args),
        Cmd::Lab(args) => lab::main(args),
        Cmd::Conformance { level, row } => match level {
            Level::Core => replay(&mut CoreDriver::new(), row.as_deref()),
            Level::Cim => match conformance::cim_driver::CimDriver::start() {
                Ok(mut d) => replay(&mut d, row.as_deref()),
                Err(e) => {
                    eprintln!("replicim conformance: cannot start the CIM servers: {e}");
                    2
                }
            },
            Level::Lab => {
                let exe = match std::env::current_exe() {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("replicim conformance: cannot find my own binary: {e}");
                        return 2;
                    }
                };
                let root = std::env::temp_dir()
                    .join(format!("replicim-conformance-{}", std::process::id()));
                let mut d = conformance::lab_driver::LabDriver::new(root.clone(), exe);
                let code = replay(&mut d, row.as_deref());
                let kept = d.kept();
                drop(d);
                if kept == 0 {
                    let _ = std::fs::remove_dir_all(root);
                }
                code
            }
        },
    }
}

/// Replays both tables; 0 when every row passed.
fn replay(driver: &mut dyn conformance::Driver, row: Option<&str>) -> i32 {
    let mut out = std::io::stdout().lock();
    match conformance::run_rows(driver, &mut out, row) {
        Ok((_, 0)) => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("replicim conformance: {e}");
            2
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal; a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
