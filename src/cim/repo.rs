//! The class repository: namespaces holding qualifier declarations,
//! resolved classes (inherited members merged in) and static instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::{Class, Instance, Name, QualifierDecl};

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

    pub fn add_instance(&mut self, i: Instance) {
        self.instances.push(i);
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
