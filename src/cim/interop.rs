//! The interop namespace (root/interop, alias `interop`): CIM_Namespace,
//! exactly one CIM_ObjectManager, and the profile registry behind
//! CIM_ElementConformsToProfile and CIM_ReferencedProfile.
//!
//! Products built on the server register their profiles and conformant
//! elements here (see [`Interop::register_profile`]).

use std::sync::Mutex;

use super::dispatch::{Ctx, Provider};
use super::error::CimError;
use super::model::{CimType, Instance, Name, ObjectPath, Value};
use super::repo::INTEROP;
use super::schema::IMPLEMENTATION;

/// Brand and version reported by the object manager.
pub const BRAND: &str = "replicim";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Default)]
struct Registry {
    profiles: Vec<Instance>,
    conforms: Vec<(ObjectPath, ObjectPath)>,
    referenced: Vec<(ObjectPath, ObjectPath)>,
}

/// The interop provider.
pub struct Interop {
    host: String,
    namespaces: Vec<String>,
    registry: Mutex<Registry>,
}

fn s(v: &str) -> Option<Value> {
    Some(Value::String(v.to_string()))
}

/// The path of a registered profile instance.
pub fn profile_path(instance_id: &str) -> ObjectPath {
    ObjectPath {
        host: None,
        namespace: Some(INTEROP.into()),
        class: Name::new("RCM_RegisteredProfile"),
        keys: vec![(
            Name::new("InstanceID"),
            Value::String(instance_id.to_string()),
        )],
    }
}

impl Interop {
    pub fn new(host: &str, namespaces: &[&str]) -> Interop {
        Interop {
            host: host.to_string(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            registry: Mutex::new(Registry::default()),
        }
    }

    pub fn object_manager_path(&self) -> ObjectPath {
        ObjectPath {
            host: None,
            namespace: Some(INTEROP.into()),
            class: Name::new("RCM_ObjectManager"),
            keys: vec![
                (
                    Name::new("CreationClassName"),
                    Value::String("RCM_ObjectManager".into()),
                ),
                (Name::new("Name"), Value::String(BRAND.into())),
                (
                    Name::new("SystemCreationClassName"),
                    Value::String("RCM_ComputerSystem".into()),
                ),
                (Name::new("SystemName"), Value::String(self.host.clone())),
            ],
        }
    }

    /// Registers a profile (organization, name, version); returns its path.
    pub fn register_profile(&self, org: u16, name: &str, version: &str) -> ObjectPath {
        let id = format!("{BRAND}:profile:{org}:{name}:{version}");
        let inst = Instance::new("RCM_RegisteredProfile")
            .with("InstanceID", CimType::String, s(&id))
            .with(
                "RegisteredOrganization",
                CimType::Uint16,
                Some(Value::Uint16(org)),
            )
            .with("RegisteredName", CimType::String, s(name))
            .with("RegisteredVersion", CimType::String, s(version))
            .with(
                "AdvertiseTypes",
                CimType::Uint16,
                Some(Value::Array(vec![Some(Value::Uint16(2))])),
            );
        let mut r = self.registry.lock().expect("not poisoned");
        if !r
            .profiles
            .iter()
            .any(|p| p.get("InstanceID") == s(&id).as_ref())
        {
            r.profiles.push(inst);
        }
        profile_path(&id)
    }

    /// Declares that `element` conforms to the profile at `profile`.
    pub fn conforms(&self, profile: ObjectPath, element: ObjectPath) {
        self.registry
            .lock()
            .expect("not poisoned")
            .conforms
            .push((profile, element));
    }

    /// Declares that `dependent` references `antecedent`.
    pub fn references(&self, antecedent: ObjectPath, dependent: ObjectPath) {
        self.registry
            .lock()
            .expect("not poisoned")
            .referenced
            .push((antecedent, dependent));
    }

    fn namespace_instance(&self, name: &str) -> Instance {
        Instance::new("RCM_Namespace")
            .with(
                "SystemCreationClassName",
                CimType::String,
                s("RCM_ComputerSystem"),
            )
            .with("SystemName", CimType::String, s(&self.host))
            .with(
                "ObjectManagerCreationClassName",
                CimType::String,
                s("RCM_ObjectManager"),
            )
            .with("ObjectManagerName", CimType::String, s(BRAND))
            .with("CreationClassName", CimType::String, s("RCM_Namespace"))
            .with("Name", CimType::String, s(name))
            .with("ClassInfo", CimType::Uint16, Some(Value::Uint16(0)))
    }

    fn namespace_path(&self, name: &str) -> ObjectPath {
        let i = self.namespace_instance(name);
        ObjectPath {
            host: None,
            namespace: Some(INTEROP.into()),
            class: Name::new("RCM_Namespace"),
            keys: [
                "SystemCreationClassName",
                "SystemName",
                "ObjectManagerCreationClassName",
                "ObjectManagerName",
                "CreationClassName",
                "Name",
            ]
            .iter()
            .map(|k| (Name::new(k), i.get(k).cloned().expect("set")))
            .collect(),
        }
    }
}

impl Provider for Interop {
    fn classes(&self) -> Vec<(String, Name)> {
        let mut v: Vec<(String, Name)> = [
            "RCM_Namespace",
            "RCM_ObjectManager",
            "CIM_NamespaceInManager",
            "CIM_ElementConformsToProfile",
            "CIM_ReferencedProfile",
            "RCM_RegisteredProfile",
        ]
        .iter()
        .map(|c| (INTEROP.to_string(), Name::new(c)))
        .collect();
        // Conformance can be followed from the implementation namespace too.
        v.push((
            IMPLEMENTATION.to_string(),
            Name::new("CIM_ElementConformsToProfile"),
        ));
        v
    }

    fn enumerate(&self, ctx: &Ctx, class: &Name) -> Result<Vec<Instance>, CimError> {
        let r = self.registry.lock().expect("not poisoned");
        let reference =
            |name: &str, p: &ObjectPath| (name.to_string(), Some(Value::reference(p.clone())));
        let assoc = |class: &str, a: (String, Option<Value>), b: (String, Option<Value>)| {
            Instance::new(class)
                .with(&a.0, CimType::Reference(None), a.1)
                .with(&b.0, CimType::Reference(None), b.1)
        };
        let in_interop = ctx.namespace.eq_ignore_ascii_case(INTEROP)
            || ctx
                .namespace
                .eq_ignore_ascii_case(super::repo::INTEROP_ALIAS);
        Ok(match class.as_str() {
            // Through the alias, the interop namespace is named as the client
            // named it, so that a client probing `interop` finds it listed.
            "RCM_Namespace" => self
                .namespaces
                .iter()
                .map(|n| {
                    let alias = ctx
                        .namespace
                        .eq_ignore_ascii_case(super::repo::INTEROP_ALIAS)
                        && n.eq_ignore_ascii_case(INTEROP);
                    self.namespace_instance(if alias { super::repo::INTEROP_ALIAS } else { n })
                })
                .collect(),
            "RCM_ObjectManager" => vec![Instance::new("RCM_ObjectManager")
                .with("CreationClassName", CimType::String, s("RCM_ObjectManager"))
                .with("Name", CimType::String, s(BRAND))
                .with(
                    "SystemCreationClassName",
                    CimType::String,
                    s("RCM_ComputerSystem"),
                )
                .with("SystemName", CimType::String, s(&self.host))
                .with("ElementName", CimType::String, s(BRAND))
                .with(
                    "Description",
                    CimType::String,
                    s(&format!("{BRAND} CIM Server Version {VERSION}")),
                )
                .with("Started", CimType::Boolean, Some(Value::Boolean(true)))
                .with("EnabledState", CimType::Uint16, Some(Value::Uint16(2)))
                .with(
                    "OperationalStatus",
                    CimType::Uint16,
                    Some(Value::Array(vec![Some(Value::Uint16(2))])),
                )],
            "CIM_NamespaceInManager" => self
                .namespaces
                .iter()
                .map(|n| {
                    assoc(
                        "CIM_NamespaceInManager",
                        reference("Antecedent", &self.object_manager_path()),
                        reference("Dependent", &self.namespace_path(n)),
                    )
                })
                .collect(),
            "CIM_ElementConformsToProfile" => r
                .conforms
                .iter()
                .filter(|(_, e)| {
                    in_interop
                        || e.namespace
                            .as_deref()
                            .map(|n| n.eq_ignore_ascii_case(&ctx.namespace))
                            .unwrap_or(false)
                })
                .map(|(p, e)| {
                    assoc(
                        "CIM_ElementConformsToProfile",
                        reference("ConformantStandard", p),
                        reference("ManagedElement", e),
                    )
                })
                .collect(),
            "CIM_ReferencedProfile" => r
                .referenced
                .iter()
                .map(|(a, d)| {
                    assoc(
                        "CIM_ReferencedProfile",
                        reference("Antecedent", a),
                        reference("Dependent", d),
                    )
                })
                .collect(),
            "RCM_RegisteredProfile" => r.profiles.clone(),
            _ => Vec::new(),
        })
    }
}
