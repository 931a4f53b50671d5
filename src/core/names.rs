//! The one naming rule, and the size bounds every message obeys.
//!
//! Group and volume names enter through CIM methods, rcopy, the
//! configuration and the replication link; they become object-path keys,
//! file names and link frames. One rule checks them everywhere: 1 to 31
//! characters of `A-Z a-z 0-9 _ . -`, not starting with `.` or `-` (as on
//! 3PAR; the first-character rule keeps `.`/`..` and flag-like names out of
//! file names and command lines). Array names follow the same alphabet with
//! up to 63 characters (they are host-like names).
//!
//! The bounds below make every message the core builds fit in one link
//! frame (`link::MAX_FRAME`, 1 MiB), so a sender never builds a frame its
//! peer must refuse; `tests` in `link` check the largest of each kind.

/// Longest group or volume name.
pub const MAX_NAME: usize = 31;
/// Longest array name.
pub const MAX_ARRAY_NAME: usize = 63;
/// Most volume pairs in one remote-copy group.
pub const MAX_PAIRS: usize = 256;
/// Most blocks in one `SyncBlocks` message (512 KiB of data).
pub const MAX_RUN_BATCH: u64 = 128;
/// Largest volume, in 4 KiB blocks (16 TiB).
pub const MAX_VOLUME_BLOCKS: u64 = 1 << 32;
/// Longest reason text carried in a refusal.
pub const MAX_REASON: usize = 512;
/// Most block ranges a `RecoverReady` lists in all (beyond them a pair is
/// resent whole).
pub const MAX_RECOVER_RANGES: usize = 16_384;
/// Most groups in one `Hello` message (a longer listing is split).
pub const HELLO_GROUPS: usize = 8;

/// What is wrong with a name, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {shown}: {why}; names are 1-{max} characters of A-Z a-z 0-9 _ . - and do not start with . or -")]
pub struct NameError {
    pub kind: &'static str,
    pub shown: String,
    pub why: &'static str,
    pub max: usize,
}

fn check(kind: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > max {
        Some("it is too long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("it has a character outside the allowed set")
    } else if name.starts_with('.') || name.starts_with('-') {
        Some("it starts with . or -")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(NameError {
            kind,
            shown: shown(name),
            why,
            max,
        }),
    }
}

/// A name quoted for a message, cut short if it is long.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    if cut.len() < name.len() {
        format!("{cut:?}... ({} bytes)", name.len())
    } else {
        format!("{cut:?}")
    }
}

/// A group name.
pub fn group(name: &str) -> Result<(), NameError> {
    check("group", name, MAX_NAME)
}

/// A volume name.
pub fn volume(name: &str) -> Result<(), NameError> {
    check("volume", name, MAX_NAME)
}

/// An array name.
pub fn array(name: &str) -> Result<(), NameError> {
    check("array", name, MAX_ARRAY_NAME)
}

/// A reason text cut to [`MAX_REASON`] bytes (on a character boundary).
pub fn reason(text: String) -> String {
    if text.len() <= MAX_REASON {
        return text;
    }
    let mut end = MAX_REASON - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in ["rcg0", "vol_1", "a.b-c", "A", &"x".repeat(31)] {
            assert!(group(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-x", "bad/name", "a b", "é", &"x".repeat(32)] {
            let e = group(bad).unwrap_err();
            assert!(e.to_string().contains("1-31 characters"), "{e}");
        }
        assert!(array(&"s".repeat(63)).is_ok());
        assert!(array(&"s".repeat(64)).is_err());
        let long = group(&"y".repeat(100_000)).unwrap_err().to_string();
        assert!(long.len() < 300, "the message stays short: {long}");
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let r = reason("é".repeat(1000));
        assert!(r.len() <= MAX_REASON && r.ends_with("..."));
    }
}
