//! Preconditions shared by the operations: the group exists, this side is
//! its source, the link is up, the peer agrees on the roles.

use super::*;

impl<S: BlockStore> Array<S> {
    pub(super) fn need_group(&self, name: &str) -> Result<(), CommandError> {
        if self.groups.contains_key(name) {
            Ok(())
        } else {
            Err(CommandError::NoSuchGroup {
                group: name.to_string(),
                array: self.name.clone(),
            })
        }
    }

    pub(super) fn source_name(&self, g: &Group) -> String {
        if g.role.is_source() {
            self.name.clone()
        } else {
            g.peer.clone()
        }
    }

    /// `op` runs only on a group in `role`; elsewhere it is refused, and
    /// `hint` says where it runs instead.
    pub(super) fn need_role(
        &self,
        g: &Group,
        op: &'static str,
        role: Role,
        hint: impl FnOnce() -> String,
    ) -> Result<(), CommandError> {
        if g.role == role {
            return Ok(());
        }
        Err(CommandError::WrongSide {
            op,
            need: role.into(),
            hint: hint(),
            array: self.name.clone(),
            role: g.role,
            group: g.name.clone(),
        })
    }

    pub(super) fn need_source(&self, g: &Group, op: &'static str) -> Result<(), CommandError> {
        if g.role.is_source() {
            return Ok(());
        }
        Err(CommandError::WrongSide {
            op,
            need: "source (Primary or Primary-Rev)",
            hint: g.peer.clone(),
            array: self.name.clone(),
            role: g.role,
            group: g.name.clone(),
        })
    }

    pub(super) fn need_link(
        &self,
        g: &Group,
        op: &'static str,
        hint: &str,
    ) -> Result<(), CommandError> {
        if self.link_up(&g.peer) {
            Ok(())
        } else {
            Err(CommandError::LinkDown {
                op,
                peer: g.peer.clone(),
                hint: hint.to_string(),
            })
        }
    }

    /// The peer's last Hello must show the counterpart role.
    pub(super) fn need_agreement(&self, g: &Group, op: &'static str) -> Result<(), CommandError> {
        match self.peer_state(g, op)? {
            h if h.role != g.role.counterpart() => Err(CommandError::WrongSide {
                op,
                need: "source with the peer as target",
                hint: format!(
                    "{} reports role {}; resolve the roles first",
                    g.peer, h.role
                ),
                array: self.name.clone(),
                role: g.role,
                group: g.name.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// What the peer last said about `g` since the link came up: refused
    /// while its Hello is on the way, or when its complete Hello showed it
    /// does not have the group.
    pub(super) fn peer_state<'g>(
        &self,
        g: &'g Group,
        op: &'static str,
    ) -> Result<&'g GroupHello, CommandError> {
        if g.peer_missing {
            return Err(CommandError::PeerLacksGroup {
                op,
                peer: g.peer.clone(),
                group: g.name.clone(),
            });
        }
        g.peer_hello
            .as_ref()
            .ok_or_else(|| CommandError::PeerUnknown {
                op,
                peer: g.peer.clone(),
                group: g.name.clone(),
            })
    }
}

pub(super) fn busy(op: &'static str, g: &Group) -> CommandError {
    CommandError::Busy {
        op,
        group: g.name.clone(),
        what: g.busy().unwrap_or("a sync").into(),
    }
}

/// Where recover and restore run: the peer when it is the Secondary-Rev,
/// otherwise whichever side failed over.
pub(super) fn failed_over_side(g: &Group) -> String {
    if g.role == Role::SecondaryRev {
        g.peer.clone()
    } else {
        "the side that failed over".into()
    }
}
