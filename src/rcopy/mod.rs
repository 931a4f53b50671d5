//! The 3PAR remote-copy command vocabulary, parsed into core commands, and
//! (`console`) those commands as CIM-XML calls.
//!
//! Shared by the conformance scenarios, the provider (policy names) and the
//! `replicim rcopy` admin client, so a scenario line reads exactly like what
//! a storage admin types.

pub mod console;

use crate::core::{
    Command, Mode, Policies, PolicyChange, ReplicaKind, ReplicaOp, BLOCK_SIZE, MAX_RETAIN,
};

/// Parses one rcopy command line (without the program name).
///
/// ```text
/// creatercopygroup G TARGET sync|periodic[:PERIOD_MS]
/// admitrcopyvv VV G TARGET:RVV
/// dismissrcopyvv VV G
/// removercopygroup [-f] [-removevv] G   (-f: stop a started group first;
///                     -removevv: the target deletes its volumes too)
/// startrcopygroup G | stoprcopygroup G
/// verifyrcopy [-repair] G   (compare both sides by digest; -repair resends what differs)
/// syncrcopy [-n NAME] G      (a cycle now; -n: the backup retains it as VV.NAME)
/// setrcopygroup failover|restore|reverse G
/// setrcopygroup recover [-full] G
/// setrcopygroup mode sync|periodic[:PERIOD_MS] G
/// setrcopygroup pol auto_recover|no_auto_recover|fail_wrt_on_err|no_fail_wrt_on_err G
/// setrcopygroup period PERIOD[s|m|h|d] G   (0: manual syncs only)
/// createvv VV SIZE[M|G|T]     (MiB when no unit is given, as on 3PAR)
/// removevv [-f] VV            (a volume, a snapshot or a copy)
/// createsv SV VV              (a copy-on-write snapshot SV of VV)
/// createvvcopy -p VV [-online] COPY   (a full copy; -online makes COPY)
/// promotesv SV                (roll SV's base volume back to SV)
/// updatevv NAME               (a snapshot's new point, a copy's new copy)
/// promotevvcopy COPY          (the copy becomes an independent volume)
/// ```
pub fn parse(args: &[&str]) -> Result<Command, String> {
    let cmd = parse_words(args)?;
    cmd.check_names().map_err(|e| e.to_string())?;
    Ok(cmd)
}

fn parse_words(args: &[&str]) -> Result<Command, String> {
    let s = |i: usize| -> Result<String, String> {
        args.get(i)
            .map(|a| a.to_string())
            .ok_or_else(|| format!("`{}`: missing argument {}", args.join(" "), i))
    };
    let cmd = args.first().copied().unwrap_or("");
    let exact = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "`{}`: expected {} arguments, got {}",
                args.join(" "),
                n - 1,
                args.len() - 1
            ))
        }
    };
    Ok(match cmd {
        "creatercopygroup" => {
            exact(4)?;
            Command::CreateGroup {
                group: s(1)?,
                peer: s(2)?,
                mode: parse_mode(&s(3)?)?,
                policies: Policies::default(),
            }
        }
        "admitrcopyvv" => {
            exact(4)?;
            let target = s(3)?;
            let (_, remote) = target
                .split_once(':')
                .ok_or_else(|| format!("admitrcopyvv: `{target}` must be TARGET:VOLUME"))?;
            Command::Admit {
                vol: s(1)?,
                group: s(2)?,
                remote_vol: remote.to_string(),
            }
        }
        "dismissrcopyvv" => {
            exact(3)?;
            Command::Dismiss {
                vol: s(1)?,
                group: s(2)?,
            }
        }
        "removercopygroup" => {
            let (flags, group) = args[1..].split_at(args.len().saturating_sub(2));
            let force = flags.contains(&"-f");
            let remove_vv = flags.contains(&"-removevv");
            if group.is_empty() || flags.iter().any(|f| *f != "-f" && *f != "-removevv") {
                return Err("usage: removercopygroup [-f] [-removevv] G".into());
            }
            Command::RemoveGroup {
                group: group[0].to_string(),
                force,
                remove_vv,
            }
        }
        "startrcopygroup" => {
            exact(2)?;
            Command::Start { group: s(1)? }
        }
        "stoprcopygroup" => {
            exact(2)?;
            Command::Stop { group: s(1)? }
        }
        "verifyrcopy" => match args {
            [_, g] => Command::Verify {
                group: g.to_string(),
                repair: false,
            },
            [_, "-repair", g] => Command::Verify {
                group: g.to_string(),
                repair: true,
            },
            _ => return Err("usage: verifyrcopy [-repair] G".into()),
        },
        "syncrcopy" => match args {
            [_, g] => Command::Sync {
                group: g.to_string(),
                label: None,
            },
            [_, "-n", name, g] => Command::Sync {
                group: g.to_string(),
                label: Some(name.to_string()),
            },
            _ => return Err("usage: syncrcopy [-n NAME] G".into()),
        },
        "setrcopygroup" => {
            let sub = s(1)?;
            match sub.as_str() {
                "failover" => {
                    exact(3)?;
                    Command::Failover { group: s(2)? }
                }
                "restore" => {
                    exact(3)?;
                    Command::Restore { group: s(2)? }
                }
                "reverse" => {
                    exact(3)?;
                    Command::Reverse { group: s(2)? }
                }
                "recover" => match args.len() {
                    3 => Command::Recover { group: s(2)?, full: false },
                    4 if args[2] == "-full" => Command::Recover { group: s(3)?, full: true },
                    _ => return Err("usage: setrcopygroup recover [-full] GROUP".into()),
                },
                "mode" => {
                    exact(4)?;
                    Command::SetMode { mode: parse_mode(&s(2)?)?, group: s(3)? }
                }
                "period" => {
                    exact(4)?;
                    Command::SetPeriod {
                        period_ms: parse_period(&s(2)?)?,
                        group: s(3)?,
                    }
                }
                "pol" => {
                    exact(4)?;
                    let change = parse_policy(&s(2)?)?;
                    Command::SetPolicy { change, group: s(3)? }
                }
                other => {
                    return Err(format!(
                        "unknown setrcopygroup subcommand `{other}`: use failover, recover, restore, reverse, mode or pol"
                    ))
                }
            }
        }
        "createvv" => {
            exact(3)?;
            Command::CreateVolume {
                vol: s(1)?,
                blocks: parse_size(&s(2)?)?,
            }
        }
        "removevv" => match args.len() {
            2 => Command::DeleteVolume { vol: s(1)? },
            3 if args[1] == "-f" => Command::DeleteVolume { vol: s(2)? },
            _ => return Err("usage: removevv [-f] VV".into()),
        },
        "createsv" => {
            exact(3)?;
            Command::CreateReplica {
                name: s(1)?,
                source: s(2)?,
                kind: ReplicaKind::Snapshot,
                into: false,
            }
        }
        "createvvcopy" => {
            let usage = "usage: createvvcopy -p VV [-online] COPY";
            let (source, online, copy) = match args {
                [_, "-p", vv, copy] => (vv, false, copy),
                [_, "-p", vv, "-online", copy] | [_, "-online", "-p", vv, copy] => (vv, true, copy),
                _ => return Err(usage.into()),
            };
            Command::CreateReplica {
                name: copy.to_string(),
                source: source.to_string(),
                kind: ReplicaKind::Clone,
                into: !online,
            }
        }
        "promotesv" | "updatevv" | "promotevvcopy" => {
            exact(2)?;
            let op = match cmd {
                "promotesv" => ReplicaOp::Restore,
                "updatevv" => ReplicaOp::Resync,
                _ => ReplicaOp::Detach { force: false },
            };
            Command::ModifyReplica { name: s(1)?, op }
        }
        other => return Err(format!("unknown rcopy command `{other}`")),
    })
}

/// A period as 3PAR's `setrcopygroup period` takes it: a whole number
/// with a unit, s, m, h or d (seconds without one), in milliseconds. At
/// most 366 days.
pub fn parse_period(text: &str) -> Result<u64, String> {
    let (num, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("period {text}: use a number with s, m, h or d")),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("period {text}: use a number with s, m, h or d"))?;
    match n.checked_mul(secs) {
        Some(s) if s <= 366 * 86_400 => Ok(s * 1000),
        _ => Err(format!("period {text}: at most 366 days")),
    }
}

/// A volume size as 3PAR's createvv takes it: a whole number of MiB, or
/// with a unit, M, G or T (binary), in 4 KiB blocks.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (num, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "M"),
    };
    let mib: u64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "M" => 1,
        "G" => 1 << 10,
        "T" => 1 << 20,
        _ => {
            return Err(format!(
                "size `{text}`: use a number of MiB, or one with M, G or T"
            ))
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mib))
        .and_then(|m| m.checked_mul(256))
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("size `{text}` is not a size greater than 0"))
}

/// A policy name, as `setrcopygroup pol` takes it.
pub fn parse_policy(text: &str) -> Result<PolicyChange, String> {
    if let Some(v) = text.strip_prefix("max_lag=") {
        // ms for the short bounds sync mode needs; else a period.
        let ms = match v.strip_suffix("ms") {
            Some(n) => n
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 366 * 86_400_000)
                .ok_or_else(|| format!("max_lag={v}: use a number with ms, s, m, h or d"))?,
            None => parse_period(v).map_err(|e| format!("max_lag: {e}"))?,
        };
        return Ok(PolicyChange::MaxLag(ms));
    }
    if let Some(v) = text.strip_prefix("retain=") {
        return v
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_RETAIN)
            .map(PolicyChange::Retain)
            .ok_or_else(|| format!("retain={v}: use a number of copies from 0 to {MAX_RETAIN}"));
    }
    if let Some(v) = text.strip_prefix("max_backlog=") {
        let bytes = parse_size(v).map_err(|e| format!("max_backlog: {e}"))? * BLOCK_SIZE as u64;
        return Ok(PolicyChange::MaxBacklog(bytes));
    }
    Ok(match text {
        "auto_recover" => PolicyChange::AutoRecover(true),
        "no_auto_recover" => PolicyChange::AutoRecover(false),
        "fail_wrt_on_err" => PolicyChange::FailWrtOnErr(true),
        "no_fail_wrt_on_err" => PolicyChange::FailWrtOnErr(false),
        "no_max_lag" => PolicyChange::MaxLag(0),
        "no_max_backlog" => PolicyChange::MaxBacklog(0),
        other => {
            return Err(format!(
                "unknown policy `{other}`: use auto_recover, no_auto_recover, fail_wrt_on_err, no_fail_wrt_on_err, max_lag=DURATION (e.g. 500ms, 30s), no_max_lag, max_backlog=SIZE (e.g. 256M), no_max_backlog or retain=N (retained copies on the backup)"
            ))
        }
    })
}

/// The policy as `parse_policy` reads it back.
pub fn policy_text(c: PolicyChange) -> String {
    match c {
        PolicyChange::AutoRecover(true) => "auto_recover".into(),
        PolicyChange::AutoRecover(false) => "no_auto_recover".into(),
        PolicyChange::FailWrtOnErr(true) => "fail_wrt_on_err".into(),
        PolicyChange::FailWrtOnErr(false) => "no_fail_wrt_on_err".into(),
        PolicyChange::MaxLag(0) => "no_max_lag".into(),
        PolicyChange::MaxLag(ms) => format!("max_lag={ms}ms"),
        PolicyChange::MaxBacklog(0) => "no_max_backlog".into(),
        PolicyChange::MaxBacklog(b) => {
            format!("max_backlog={}M", b.div_ceil(1 << 20))
        }
        PolicyChange::Retain(n) => format!("retain={n}"),
    }
}

/// `sync`, `async`, `periodic` (manual cycles) or `periodic:MS`.
pub fn parse_mode(text: &str) -> Result<Mode, String> {
    match text.split_once(':') {
        None if text == "sync" => Ok(Mode::Sync),
        None if text == "async" => Ok(Mode::Async),
        None if text == "periodic" => Ok(Mode::Periodic { period_ms: 0 }),
        Some(("periodic", ms)) => ms
            .parse()
            .map(|period_ms| Mode::Periodic { period_ms })
            .map_err(|_| format!("period `{ms}` is not a number of milliseconds")),
        _ => Err(format!(
            "mode `{text}`: use sync, async, periodic or periodic:MS"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_vocabulary() {
        assert_eq!(
            parse(&["setrcopygroup", "recover", "-full", "rcg0"]).unwrap(),
            Command::Recover {
                group: "rcg0".into(),
                full: true
            }
        );
        assert_eq!(
            parse(&["admitrcopyvv", "vol0", "rcg0", "site-b:vol9"]).unwrap(),
            Command::Admit {
                vol: "vol0".into(),
                group: "rcg0".into(),
                remote_vol: "vol9".into()
            }
        );
        assert_eq!(
            parse_mode("periodic:500").unwrap(),
            Mode::Periodic { period_ms: 500 }
        );
        assert_eq!(parse_mode("async").unwrap(), Mode::Async);
        assert_eq!(
            parse_policy("max_lag=250ms").unwrap(),
            PolicyChange::MaxLag(250)
        );
        assert_eq!(
            parse_policy("max_lag=30s").unwrap(),
            PolicyChange::MaxLag(30_000)
        );
        assert_eq!(
            parse_policy("max_backlog=64M").unwrap(),
            PolicyChange::MaxBacklog(64 << 20)
        );
        assert_eq!(parse_policy("no_max_lag").unwrap(), PolicyChange::MaxLag(0));
        for bad in [
            "max_lag=",
            "max_lag=5x",
            "max_lag=99999999999ms",
            "max_backlog=0M",
        ] {
            assert!(parse_policy(bad).is_err(), "{bad}");
        }
        for p in [
            "max_lag=250ms",
            "no_max_backlog",
            "max_backlog=64M",
            "auto_recover",
        ] {
            let c = parse_policy(p).unwrap();
            assert_eq!(parse_policy(&policy_text(c)).unwrap(), c, "{p}");
        }
        assert!(parse(&["setrcopygroup", "explode", "rcg0"])
            .unwrap_err()
            .contains("unknown"));
        assert!(parse(&["startrcopygroup"]).is_err());
        assert_eq!(
            parse(&["createvv", "db1", "2G"]).unwrap(),
            Command::CreateVolume {
                vol: "db1".into(),
                blocks: 2 * 256 * 1024
            }
        );
        assert_eq!(parse_size("64").unwrap(), 64 * 256);
        assert_eq!(parse_size("1GiB").unwrap(), 256 * 1024);
        assert!(parse_size("0").is_err() && parse_size("5X").is_err());
        assert!(parse_size("99999999999999999T").is_err());
        assert_eq!(
            parse(&["removevv", "-f", "db1"]).unwrap(),
            Command::DeleteVolume { vol: "db1".into() }
        );
        assert_eq!(
            parse(&["createvvcopy", "-p", "db1", "-online", "db1c"]).unwrap(),
            Command::CreateReplica {
                name: "db1c".into(),
                source: "db1".into(),
                kind: ReplicaKind::Clone,
                into: false,
            }
        );
        assert_eq!(
            parse(&["createvvcopy", "-p", "db1", "db1c"]).unwrap(),
            Command::CreateReplica {
                name: "db1c".into(),
                source: "db1".into(),
                kind: ReplicaKind::Clone,
                into: true,
            }
        );
        assert_eq!(
            parse(&["promotesv", "db1s"]).unwrap(),
            Command::ModifyReplica {
                name: "db1s".into(),
                op: ReplicaOp::Restore,
            }
        );
        assert!(parse(&["createvvcopy", "db1", "db1c"]).is_err());
        assert_eq!(
            parse(&["setrcopygroup", "period", "5m", "rcg0"]).unwrap(),
            Command::SetPeriod {
                group: "rcg0".into(),
                period_ms: 300_000
            }
        );
        assert_eq!(parse_period("30").unwrap(), 30_000);
        assert!(parse_period("400d").is_err() && parse_period("5x").is_err());
        assert_eq!(
            parse(&["removevv", "db1"]).unwrap(),
            Command::DeleteVolume { vol: "db1".into() }
        );
    }
}
