//! The MOF shipped in the binary (schema/ and mof/), and the loader that
//! builds the repository from it plus any extra files a configuration names.

use super::mof::{self, MofError, Source};
use super::repo::{Repository, INTEROP};

/// The implementation namespace.
pub const IMPLEMENTATION: &str = "root/cimv2";

/// Class definitions, compiled into every namespace, in order.
pub const CLASSES: &[(&str, &str)] = &[
    (
        "schema/00_qualifiers.mof",
        include_str!("../../schema/00_qualifiers.mof"),
    ),
    (
        "schema/10_core.mof",
        include_str!("../../schema/10_core.mof"),
    ),
    (
        "schema/20_replication.mof",
        include_str!("../../schema/20_replication.mof"),
    ),
    (
        "schema/25_block.mof",
        include_str!("../../schema/25_block.mof"),
    ),
    (
        "schema/30_interop.mof",
        include_str!("../../schema/30_interop.mof"),
    ),
    (
        "mof/10_replicim.mof",
        include_str!("../../mof/10_replicim.mof"),
    ),
];

/// Registrations (instances), compiled once after the classes.
pub const REGISTRATIONS: &[(&str, &str)] = &[(
    "mof/20_interop.mof",
    include_str!("../../mof/20_interop.mof"),
)];

/// Builds the repository: root/interop and root/cimv2 with every class,
/// then the registrations, then `extra` (file name, text) sources compiled
/// into root/cimv2 (a `#pragma namespace` may switch).
pub fn load(extra: &[(String, String)]) -> Result<Repository, MofError> {
    let mut repo = Repository::new();
    let classes: Vec<Source<'_>> = CLASSES
        .iter()
        .map(|(f, t)| Source { file: f, text: t })
        .collect();
    for ns in [INTEROP, IMPLEMENTATION] {
        mof::compile(&mut repo, ns, &classes)?;
    }
    let regs: Vec<Source<'_>> = REGISTRATIONS
        .iter()
        .map(|(f, t)| Source { file: f, text: t })
        .collect();
    mof::compile(&mut repo, IMPLEMENTATION, &regs)?;
    let extra: Vec<Source<'_>> = extra
        .iter()
        .map(|(f, t)| Source { file: f, text: t })
        .collect();
    mof::compile(&mut repo, IMPLEMENTATION, &extra)?;
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mof_compiles() {
        let repo = load(&[]).unwrap();
        for ns in [INTEROP, IMPLEMENTATION, "interop"] {
            let n = repo.namespace(ns).unwrap();
            assert!(n.classes().count() >= 59, "{ns}");
            assert!(n.is_a("RCM_StorageSynchronized", "CIM_Synchronized"));
        }
        let interop = repo.namespace(INTEROP).unwrap();
        assert_eq!(interop.instances().len(), 1);
        let ss = interop.class("RCM_StorageSynchronized").unwrap();
        assert!(ss.is_association());
        assert!(ss.property("SystemElement").unwrap().is_key());
        let rs = interop.class("CIM_ReplicationService").unwrap();
        let m = rs.method("ModifyReplicaSynchronization").unwrap();
        assert!(m
            .params
            .iter()
            .any(|p| p.name.is("UpdatedSynchronization") && p.is_out()));
    }

    #[test]
    fn a_bad_extra_file_names_its_location() {
        let e = load(&[("site.mof".into(), "class X : CIM_Nope {};".into())]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("site.mof:1:1: superclass CIM_Nope"),
            "{e}"
        );
    }
}
