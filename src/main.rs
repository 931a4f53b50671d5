//! The `replicim` binary: parses the command line and hands over to
//! `replicim::cli`.

use clap::Parser;

fn main() {
    let cli = replicim::cli::Cli::parse();
    std::process::exit(replicim::cli::main_with(cli));
}
