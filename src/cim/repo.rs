//! The class repository: namespaces holding qualifier declarations,
//! resolved classes (inherited members merged in) and static instances.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use super::model::{Class, Instance, Name, ObjectPath, QualifierDecl, Value};

/// The interop namespace and its alias.
pub const INTEROP: &str = "root/interop";
pub const INTEROP_ALIAS: &str = "interop";

/// One namespace.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    pub name: String,
    classes: BTreeMap<Name, Arc<Class>>,
    children: BTreeMap<Name, Vec<Name>>,
    qualifiers: BTreeMap<Name, QualifierDecl>,
    instances: Vec<Instance>,
    /// Static instances by class (positions in `instances`)...
    by_class: HashMap<Name, Vec<usize>>,
    /// ...and by identity ([`identity`] of their path), so GetInstance
    /// and enumeration cost what one class holds, not the namespace.
    by_identity: HashMap<String, usize>,
    /// Instances added before their class, by class (compared one by one).
    unindexed: HashMap<Name, Vec<usize>>,
}

impl Namespace {
    pub fn new(name: &str) -> Namespace {
        Namespace {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn class(&self, name: &str) -> Option<&Arc<Class>> {
        self.classes.get(&Name::new(name))
    }

    pub fn classes(&self) -> impl Iterator<Item = &Arc<Class>> {
        self.classes.values()
    }

    pub fn qualifier(&self, name: &str) -> Option<&QualifierDecl> {
        self.qualifiers.get(&Name::new(name))
    }

    pub fn qualifiers(&self) -> impl Iterator<Item = &QualifierDecl> {
        self.qualifiers.values()
    }

    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    pub fn add_qualifier(&mut self, q: QualifierDecl) {
        self.qualifiers.insert(q.name.clone(), q);
    }

    pub fn add_class(&mut self, c: Class) {
        if let Some(s) = &c.superclass {
            let kids = self.children.entry(s.clone()).or_default();
            if !kids.contains(&c.name) {
                kids.push(c.name.clone());
            }
        }
        self.classes.insert(c.name.clone(), Arc::new(c));
    }

    /// Adds a static instance. Its class should be in the namespace already
    /// (MOF defines a class before its instances); one that is not yet is
    /// found by a scan of its class's instances instead of by identity.
    pub fn add_instance(&mut self, i: Instance) {
        let at = self.instances.len();
        match self.class(i.class.as_str()) {
            Some(c) => {
                // A duplicate keeps the first, as a scan would find it.
                let id = identity(&i.path(c, &self.name, None));
                self.by_identity.entry(id).or_insert(at);
            }
            None => self.unindexed.entry(i.class.clone()).or_default().push(at),
        }
        self.by_class.entry(i.class.clone()).or_default().push(at);
        self.instances.push(i);
    }

    /// The static instances of exactly `class` (not its subclasses).
    pub fn instances_of(&self, class: &Name) -> impl Iterator<Item = &Instance> {
        self.by_class
            .get(class)
            .into_iter()
            .flatten()
            .map(|at| &self.instances[*at])
    }

    /// The static instance at `path` (keys typed by `class`), if any.
    pub fn static_instance(&self, class: &Class, path: &ObjectPath) -> Option<&Instance> {
        let indexed = self
            .by_identity
            .get(&identity(path))
            .map(|at| &self.instances[*at]);
        indexed.or_else(|| {
            self.unindexed
                .get(&class.name)
                .into_iter()
                .flatten()
                .map(|at| &self.instances[*at])
                .find(|i| i.path(class, &self.name, None).same_instance(path))
        })
    }

    /// Direct subclasses of `class`, or every class with no superclass.
    pub fn children(&self, class: Option<&str>) -> Vec<Name> {
        match class {
            Some(c) => self
                .children
                .get(&Name::new(c))
                .cloned()
                .unwrap_or_default(),
            None => self
                .classes
                .values()
                .filter(|c| c.superclass.is_none())
                .map(|c| c.name.clone())
                .collect(),
        }
    }

    /// `class` and all its subclasses, parents before children.
    pub fn subtree(&self, class: &str) -> Vec<Name> {
        let mut out = Vec::new();
        if let Some(c) = self.class(class) {
            out.push(c.name.clone());
        }
        let mut i = 0;
        while i < out.len() {
            let kids = self.children(Some(out[i].as_str()));
            out.extend(kids);
            i += 1;
        }
        out
    }

    /// True when `class` is `ancestor` or inherits from it.
    pub fn is_a(&self, class: &str, ancestor: &str) -> bool {
        let mut cur = self.class(class).cloned();
        let mut guard = 0;
        while let Some(c) = cur {
            if c.name.is(ancestor) {
                return true;
            }
            guard += 1;
            if guard > 64 {
                return false;
            }
            cur = c
                .superclass
                .as_ref()
                .and_then(|s| self.class(s.as_str()).cloned());
        }
        false
    }
}

/// A text that two paths share exactly when they name the same instance
/// ([`ObjectPath::same_instance`]): the class and the keys, names without
/// case and in order, numbers by value whatever type wrote them, strings
/// exactly, references by their own identity; host and namespace left out.
pub fn identity(p: &ObjectPath) -> String {
    let mut out = String::new();
    write_identity(p, &mut out);
    out
}

fn write_identity(p: &ObjectPath, out: &mut String) {
    let class = p.class.as_str().to_ascii_lowercase();
    let _ = write!(out, "{}:{class}(", class.len());
    let mut keys: Vec<(String, &Value)> = p
        .keys
        .iter()
        .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, v) in keys {
        let _ = write!(out, "{}:{n}=", n.len());
        match v {
            Value::Reference(r) => {
                out.push('r');
                write_identity(r, out);
            }
            Value::String(s) => {
                let _ = write!(out, "s{}:{s}", s.len());
            }
            other => match other.as_u64() {
                Some(n) => {
                    let _ = write!(out, "n{n};");
                }
                None => {
                    let t = other.to_text().to_ascii_lowercase();
                    let _ = write!(out, "t{}:{t}", t.len());
                }
            },
        }
    }
    out.push(')');
}

/// All namespaces of a server.
#[derive(Clone, Debug, Default)]
pub struct Repository {
    namespaces: BTreeMap<String, Namespace>,
}

impl Repository {
    pub fn new() -> Repository {
        Repository::default()
    }

    fn key(name: &str) -> String {
        let n = name.trim_matches('/').to_ascii_lowercase();
        if n == INTEROP_ALIAS {
            INTEROP.to_string()
        } else {
            n
        }
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(&Self::key(name))
    }

    pub fn namespace_mut(&mut self, name: &str) -> &mut Namespace {
        self.namespaces
            .entry(Self::key(name))
            .or_insert_with(|| Namespace::new(name.trim_matches('/')))
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(class: &str, keys: Vec<(&str, Value)>) -> ObjectPath {
        ObjectPath {
            host: None,
            namespace: None,
            class: Name::new(class),
            keys: keys.into_iter().map(|(n, v)| (Name::new(n), v)).collect(),
        }
    }

    /// `identity` agrees with `same_instance` on what makes two paths the
    /// same instance and what does not.
    #[test]
    fn identity_is_same_instance() {
        let a = path(
            "TST_W",
            vec![
                ("Name", Value::String("a".into())),
                ("Id", Value::Uint32(1)),
            ],
        );
        let alike = [
            // Key order, case of names, host, the integer type.
            path(
                "tst_w",
                vec![
                    ("ID", Value::Uint64(1)),
                    ("name", Value::String("a".into())),
                ],
            ),
            ObjectPath {
                host: Some("h:5988".into()),
                ..path(
                    "TST_W",
                    vec![("Name", Value::String("a".into())), ("Id", Value::Uint8(1))],
                )
            },
        ];
        let different = [
            path(
                "TST_W",
                vec![
                    ("Name", Value::String("A".into())),
                    ("Id", Value::Uint32(1)),
                ],
            ),
            path(
                "TST_W",
                vec![
                    ("Name", Value::String("a".into())),
                    ("Id", Value::Uint32(2)),
                ],
            ),
            path(
                "TST_V",
                vec![
                    ("Name", Value::String("a".into())),
                    ("Id", Value::Uint32(1)),
                ],
            ),
            path("TST_W", vec![("Name", Value::String("a".into()))]),
            // A string that reads like the identity of another.
            path(
                "TST_W",
                vec![
                    ("Name", Value::String("a);4:id=n1;".into())),
                    ("Id", Value::Uint32(1)),
                ],
            ),
        ];
        for b in &alike {
            assert!(a.same_instance(b));
            assert_eq!(identity(&a), identity(b), "{b}");
        }
        for b in &different {
            assert!(!a.same_instance(b));
            assert_ne!(identity(&a), identity(b), "{b}");
        }
        let r = |p: &ObjectPath| path("TST_L", vec![("Left", Value::reference(p.clone()))]);
        assert_eq!(identity(&r(&a)), identity(&r(&alike[0])));
        assert_ne!(identity(&r(&a)), identity(&r(&different[1])));
    }
}
