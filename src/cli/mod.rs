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
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Core,
    Cim,
    Lab,
}

/// Runs the command line; returns the process exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Cmd::Serve {
            config,
            link_fingerprint: true,
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
        Cmd::Conformance { level } => match level {
            Level::Core => replay(&mut CoreDriver::new()),
            Level::Cim => match conformance::cim_driver::CimDriver::start() {
                Ok(mut d) => replay(&mut d),
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
                let code = replay(&mut d);
                drop(d);
                let _ = std::fs::remove_dir_all(root);
                code
            }
        },
    }
}

/// Replays both tables; 0 when every row passed.
fn replay(driver: &mut dyn conformance::Driver) -> i32 {
    let mut out = std::io::stdout().lock();
    match conformance::run(driver, &mut out) {
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
