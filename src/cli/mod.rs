//! The subcommands of the `replicim` binary.
//!
//! Built so far: `conformance --level core`. The CIM-XML server (`serve`),
//! the two-process lab (`lab`) and the admin client (`rcopy`) come with
//! their issues; until then they are absent rather than stubbed.

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
    /// Replay the state tables (conformance/*.toml) and compare every column.
    Conformance {
        /// core: the sans-IO core in process. cim and lab are not built yet.
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
        Cmd::Conformance { level } => match level {
            Level::Core => {
                let mut driver = CoreDriver::new();
                let mut out = std::io::stdout().lock();
                match conformance::run(&mut driver, &mut out) {
                    Ok((_, 0)) => 0,
                    Ok(_) => 1,
                    Err(e) => {
                        eprintln!("replicim conformance: {e}");
                        2
                    }
                }
            }
            other => {
                eprintln!(
                    "replicim conformance: level {:?} is not built yet; only --level core exists today (see README)",
                    other
                );
                2
            }
        },
    }
}
