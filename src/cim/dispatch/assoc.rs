//! References, Associators and their Name forms: walks from one object
//! through the association classes, at instance and at class level.

use super::*;

impl Dispatcher {
    pub(super) fn check_class_param(
        &self,
        n: &Namespace,
        c: &Option<Name>,
        what: &str,
    ) -> Result<(), CimError> {
        if let Some(c) = c {
            if n.class(c.as_str()).is_none() {
                return Err(CimError::invalid_parameter(format!(
                    "{what} {c} does not exist"
                )));
            }
        }
        Ok(())
    }

    /// (association instance, the reference property that points at
    /// `object`) for every association instance that references it.
    pub(super) fn referencing(
        &self,
        n: &Namespace,
        object: &ObjectPath,
        f: &AssocFilter,
        assoc_filter: Option<&Name>,
        req: &str,
    ) -> Result<Vec<(Found, Name)>, CimError> {
        let mut out = Vec::new();
        let assoc_classes: Vec<Arc<Class>> = n
            .classes()
            .filter(|c| c.is_association())
            .cloned()
            .collect();
        for ac in assoc_classes {
            if let Some(a) = assoc_filter {
                if !n.is_a(ac.name.as_str(), a.as_str()) {
                    continue;
                }
            }
            // Only enumerate concrete instances of this exact class once.
            let near = self.raw_instances_near(n, &ac, Some(object), req)?;
            for (path, inst) in near.into_iter().map(|r| self.finish(&n.name, r)) {
                for p in inst
                    .properties
                    .iter()
                    .filter(|p| matches!(p.ty, CimType::Reference(_)))
                {
                    if let Some(role) = &f.role {
                        if !p.name.is(role) {
                            continue;
                        }
                    }
                    if let Some(Value::Reference(r)) = &p.value {
                        let same_ns = r
                            .namespace
                            .as_deref()
                            .map(|x| {
                                ns_key(x) == ns_key(object.namespace.as_deref().unwrap_or(&n.name))
                            })
                            .unwrap_or(true);
                        if same_ns && r.same_instance(object) {
                            out.push(((path.clone(), inst.clone()), p.name.clone()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub(super) fn references(
        &self,
        n: &Namespace,
        object: &ObjectPath,
        f: &AssocFilter,
        req: &str,
    ) -> Result<Vec<Found>, CimError> {
        self.check_class_param(n, &f.result_class, "ResultClass")?;
        let mut object = self.typed_path(n, object)?.1;
        object.namespace = Some(n.name.clone());
        self.get_instance(n, &object, req)?;
        let found = self.referencing(n, &object, f, f.result_class.as_ref(), req)?;
        let mut out: Vec<Found> = Vec::new();
        for (fi, _) in found {
            if !out.iter().any(|(p, _)| p.same_instance(&fi.0)) {
                out.push(fi);
            }
        }
        Ok(out)
    }

    pub(super) fn associators(
        &self,
        n: &Namespace,
        object: &ObjectPath,
        f: &AssocFilter,
        req: &str,
    ) -> Result<Vec<Found>, CimError> {
        self.check_class_param(n, &f.assoc_class, "AssocClass")?;
        self.check_class_param(n, &f.result_class, "ResultClass")?;
        let mut object = self.typed_path(n, object)?.1;
        object.namespace = Some(n.name.clone());
        self.get_instance(n, &object, req)?;
        let mut out: Vec<Found> = Vec::new();
        for ((_, inst), role) in self.referencing(n, &object, f, f.assoc_class.as_ref(), req)? {
            for p in inst
                .properties
                .iter()
                .filter(|p| matches!(p.ty, CimType::Reference(_)) && p.name != role)
            {
                if let Some(rr) = &f.result_role {
                    if !p.name.is(rr) {
                        continue;
                    }
                }
                let Some(Value::Reference(target)) = &p.value else {
                    continue;
                };
                let tns_name = target.namespace.clone().unwrap_or_else(|| n.name.clone());
                let Some(tns) = self.repo.namespace(&tns_name) else {
                    continue;
                };
                if let Some(rc) = &f.result_class {
                    if !tns.is_a(target.class.as_str(), rc.as_str()) {
                        continue;
                    }
                }
                let tns_req = if ns_key(&tns.name) == ns_key(&n.name) {
                    req
                } else {
                    tns.name.as_str()
                };
                let found = match self.get_instance(tns, target, tns_req) {
                    Ok(x) => x,
                    // Not here: the far end on another system (a peer's
                    // volume), else a dangling reference.
                    Err(e) if e.code == 6 => match self.foreign_instance(tns, target, tns_req) {
                        Some(x) => x,
                        None => continue,
                    },
                    Err(e) => return Err(e),
                };
                if !out
                    .iter()
                    .any(|(x, _)| x.same_instance(&found.0) && x.namespace == found.0.namespace)
                {
                    out.push(found);
                }
            }
        }
        Ok(out)
    }

    /// Class-level References/Associators: association classes that can
    /// reference `class` (or the classes at their other ends).
    pub(super) fn class_assoc(
        &self,
        n: &Namespace,
        class: &str,
        f: &AssocFilter,
        associators: bool,
    ) -> Result<Vec<Arc<Class>>, CimError> {
        self.class(n, class, CimError::invalid_parameter)?;
        let mut out: Vec<Arc<Class>> = Vec::new();
        for ac in n.classes().filter(|c| c.is_association()) {
            let filter_class = if associators {
                &f.assoc_class
            } else {
                &f.result_class
            };
            if let Some(a) = filter_class {
                if !n.is_a(ac.name.as_str(), a.as_str()) {
                    continue;
                }
            }
            for p in ac.properties.iter() {
                let CimType::Reference(Some(rc)) = &p.ty else {
                    continue;
                };
                if !(n.is_a(class, rc.as_str()) || n.is_a(rc.as_str(), class)) {
                    continue;
                }
                if f.role.as_ref().is_some_and(|r| !p.name.is(r)) {
                    continue;
                }
                if !associators {
                    if !out.iter().any(|c| c.name == ac.name) {
                        out.push(ac.clone());
                    }
                    continue;
                }
                for q in ac.properties.iter().filter(|q| q.name != p.name) {
                    let CimType::Reference(Some(other)) = &q.ty else {
                        continue;
                    };
                    if f.result_role.as_ref().is_some_and(|r| !q.name.is(r)) {
                        continue;
                    }
                    if f.result_class
                        .as_ref()
                        .is_some_and(|r| !n.is_a(other.as_str(), r.as_str()))
                    {
                        continue;
                    }
                    if let Some(c) = n.class(other.as_str()) {
                        if !out.iter().any(|x| x.name == c.name) {
                            out.push(c.clone());
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
