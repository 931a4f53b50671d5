//! Helpers shared by the integration tests.

use replicim::core::{ArrayConfig, Command, Mode, Policies, SyncStatus};
use replicim::sim::Sim;

pub const A: &str = "site-a";
pub const B: &str = "site-b";
pub const G: &str = "rcg0";

/// Two linked arrays with group rcg0 over the given volumes (created on A
/// with `blocks` blocks each), not started.
pub fn pair(mode: Mode, policies: Policies, vols: &[&str], blocks: u64) -> Sim {
    pair_with(ArrayConfig::default(), mode, policies, vols, blocks)
}

/// [`pair`] with both arrays tuned by `config`.
pub fn pair_with(
    config: ArrayConfig,
    mode: Mode,
    policies: Policies,
    vols: &[&str],
    blocks: u64,
) -> Sim {
    let mut sim = Sim::new();
    sim.add_array(A, config);
    sim.add_array(B, config);
    sim.link_up(A, B).unwrap();
    sim.settle(1000).unwrap();
    for v in vols {
        sim.create_volume(A, v, blocks).unwrap();
    }
    sim.command(
        A,
        Command::CreateGroup {
            group: G.into(),
            peer: B.into(),
            mode,
            policies,
        },
    )
    .unwrap();
    sim.settle(1000).unwrap();
    for v in vols {
        sim.command(
            A,
            Command::Admit {
                group: G.into(),
                vol: v.to_string(),
                remote_vol: v.to_string(),
            },
        )
        .unwrap();
        sim.settle(1000).unwrap();
    }
    sim
}

/// Starts rcg0 on `side` and settles.
pub fn start(sim: &mut Sim, side: &str) {
    sim.command(side, Command::Start { group: G.into() })
        .unwrap();
    settle(sim);
}

pub fn settle(sim: &mut Sim) {
    let n = sim.settle(1_000_000).unwrap();
    assert!(n < 1_000_000, "did not settle");
}

pub fn status(sim: &Sim, side: &str, vol: &str) -> SyncStatus {
    sim.array(side).view(G, vol).expect("pair exists").status
}

pub fn same_data(sim: &mut Sim, vol: &str) -> bool {
    sim.checksum(A, vol).unwrap() == sim.checksum(B, vol).unwrap()
}

pub fn cmd(sim: &mut Sim, side: &str, line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let c = replicim::rcopy::parse(&words)?;
    sim.command(side, c).map_err(|e| e.to_string())
}

/// A TCP connection to `to` from the loopback address `ip` (127.0.0.0/8 is
/// all loopback on Linux), so a test can play a second client host.
pub fn connect_from(ip: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::from((ip, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}
