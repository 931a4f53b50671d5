//! The entry points: each intrinsic operation and extrinsic method call,
//! validated and encoded as a reply.

use super::*;

impl Dispatcher {
    /// Runs one intrinsic operation and encodes its reply.
    pub fn intrinsic(&self, id: &str, method: &str, ns: &str, op: Op) -> Reply {
        let _scope = InRequest::enter();
        match self.run(id, method, ns, op) {
            Ok(r) => r,
            Err(e) => error_reply(id, method, true, &e),
        }
    }

    /// Associators, References and their Names forms: class-level when the
    /// object has no keys, else the related instances; objects when a
    /// `shape` is given, paths otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn related(
        &self,
        id: &str,
        method: &str,
        n: &Namespace,
        object: ObjectPath,
        filter: AssocFilter,
        shape: Option<Shape>,
        associators: bool,
        req: &str,
    ) -> Result<Reply, CimError> {
        let ns = n.name.as_str();
        if object.keys.is_empty() {
            let classes = self.class_assoc(n, object.class.as_str(), &filter, associators)?;
            return Ok(match shape {
                Some(s) => self.class_objects(id, method, ns, classes, &s),
                None => self.class_paths(id, method, ns, classes),
            });
        }
        let found = if associators {
            self.associators(n, &object, &filter, req)?
        } else {
            self.references(n, &object, &filter, req)?
        };
        let host = self.host.clone();
        Ok(match shape {
            Some(s) => objects_with_path(id, method, found, s, host),
            None => object_paths(id, method, found.into_iter().map(|f| f.0).collect(), host),
        })
    }

    pub(super) fn run(
        &self,
        id: &str,
        method: &str,
        ns_name: &str,
        op: Op,
    ) -> Result<Reply, CimError> {
        let n = self.ns(ns_name)?;
        let ns = n.name.as_str();
        let req = ns_name.trim_matches('/');
        let host = self.host.clone();
        let small = |f: &dyn Fn(&mut Vec<u8>)| -> Reply {
            let mut out = Vec::new();
            encode::open(&mut out, id, method, true);
            f(&mut out);
            encode::close(&mut out, true);
            Reply {
                head: out,
                items: None,
                tail: Vec::new(),
                status: 0,
                not_valid: None,
            }
        };
        let void = || small(&|_| {});
        Ok(match op {
            Op::GetClass {
                class,
                local_only,
                shape,
            } => {
                let c = n
                    .class(class.as_str())
                    .ok_or_else(|| {
                        CimError::not_found(format!(
                            "class {class} does not exist in namespace {ns}"
                        ))
                    })?
                    .clone();
                let es = to_encode_shape(&shape);
                small(&|out| encode::ireturn(out, |out| encode::class(out, &c, &es, local_only)))
            }
            Op::EnumerateClasses {
                class,
                deep,
                local_only,
                shape,
            } => {
                let list = self.class_list(n, class.as_ref(), deep)?;
                let classes: Vec<Arc<Class>> = list
                    .iter()
                    .filter_map(|c| n.class(c.as_str()).cloned())
                    .collect();
                let mut i = 0;
                streaming(
                    id,
                    method,
                    Box::new(move |out| {
                        let es = to_encode_shape(&shape);
                        let end = (i + 64).min(classes.len());
                        for c in &classes[i..end] {
                            encode::class(out, c, &es, local_only);
                        }
                        i = end;
                        i < classes.len()
                    }),
                )
            }
            Op::EnumerateClassNames { class, deep } => {
                let list = self.class_list(n, class.as_ref(), deep)?;
                small(&|out| {
                    encode::ireturn(out, |out| {
                        for c in &list {
                            encode::class_name(out, c.as_str());
                        }
                    })
                })
            }
            Op::GetQualifier { name } => {
                let q = n
                    .qualifier(name.as_str())
                    .ok_or_else(|| {
                        CimError::not_found(format!("qualifier {name} is not declared in {ns}"))
                    })?
                    .clone();
                small(&|out| encode::ireturn(out, |out| encode::qualifier_decl(out, &q)))
            }
            Op::EnumerateQualifiers => {
                let qs: Vec<_> = n.qualifiers().cloned().collect();
                small(&|out| {
                    encode::ireturn(out, |out| {
                        for q in &qs {
                            encode::qualifier_decl(out, q);
                        }
                    })
                })
            }
            Op::GetInstance { path, shape } => {
                let (_, inst) = self.get_instance(n, &path, req)?;
                let es = to_encode_shape(&shape);
                small(&|out| encode::ireturn(out, |out| encode::instance(out, &inst, &es)))
            }
            Op::EnumerateInstances { class, deep, shape } => {
                let c = self
                    .class(n, class.as_str(), CimError::invalid_class)?
                    .clone();
                // Raw instances only: each chunk is shaped, named and encoded
                // as it goes, and dropped once written.
                let mut raw = self.raw_enumerate(n, class.as_str(), req)?.into_iter();
                let (ns, host) = (n.name.clone(), self.host.clone());
                streaming(
                    id,
                    method,
                    Box::new(move |out| {
                        let es = to_encode_shape(&shape);
                        for (cls, inst) in raw.by_ref().take(32) {
                            let path = inst.path(&cls, &ns, Some(&host));
                            let mut inst = normalize(&cls, inst);
                            if !deep {
                                inst.properties
                                    .retain(|p| c.property(p.name.as_str()).is_some());
                            }
                            encode::named_instance(out, &path, &inst, &es);
                        }
                        raw.len() > 0
                    }),
                )
            }
            Op::EnumerateInstanceNames { class } => {
                self.class(n, class.as_str(), CimError::invalid_class)?;
                let mut names = self.enumerate_names(n, class.as_str(), req)?.into_iter();
                streaming(
                    id,
                    method,
                    Box::new(move |out| {
                        for path in names.by_ref().take(64) {
                            encode::instance_name(out, &path);
                        }
                        names.len() > 0
                    }),
                )
            }
            Op::Associators {
                object,
                filter,
                shape,
            } => self.related(id, method, n, object, filter, Some(shape), true, req)?,
            Op::AssociatorNames { object, filter } => {
                self.related(id, method, n, object, filter, None, true, req)?
            }
            Op::References {
                object,
                filter,
                shape,
            } => self.related(id, method, n, object, filter, Some(shape), false, req)?,
            Op::ReferenceNames { object, filter } => {
                self.related(id, method, n, object, filter, None, false, req)?
            }
            Op::ExecQuery { language, query } => {
                let found = self.query(n, req, &language, &query)?;
                let shape = Shape {
                    include_qualifiers: false,
                    include_class_origin: false,
                    property_list: query::parse(&query)?.select,
                };
                objects_with_path(id, method, found, shape, host)
            }
            Op::CreateInstance { instance } => {
                let class = self
                    .class(n, instance.class.as_str(), CimError::invalid_class)?
                    .clone();
                let inst = typed_instance(&class, instance)?;
                let p = self.provider(ns, &class.name).ok_or_else(|| {
                    CimError::not_supported(format!(
                        "class {} does not accept CreateInstance",
                        class.name
                    ))
                })?;
                let path = p.create(&self.ctx(req), &class, inst)?;
                small(&|out| encode::ireturn(out, |out| encode::instance_name(out, &path)))
            }
            Op::ModifyInstance {
                path,
                instance,
                property_list,
            } => {
                let (class, typed) = self.typed_path(n, &path)?;
                self.get_instance(n, &typed, req)?;
                let inst = typed_instance(&class, instance)?;
                let p = self.provider(ns, &class.name).ok_or_else(|| {
                    CimError::not_supported(format!(
                        "class {} does not accept ModifyInstance",
                        class.name
                    ))
                })?;
                p.modify(
                    &self.ctx(req),
                    &class,
                    &typed,
                    inst,
                    property_list.as_deref(),
                )?;
                void()
            }
            Op::DeleteInstance { path } => {
                let (class, typed) = self.typed_path(n, &path)?;
                self.get_instance(n, &typed, req)?;
                let p = self.provider(ns, &class.name).ok_or_else(|| {
                    CimError::not_supported(format!(
                        "class {} does not accept DeleteInstance",
                        class.name
                    ))
                })?;
                p.delete(&self.ctx(req), &class, &typed)?;
                void()
            }
            Op::OpenEnumerateInstances {
                class,
                deep,
                shape,
                open,
            } => {
                let c = self
                    .class(n, class.as_str(), CimError::invalid_class)?
                    .clone();
                let mut found = self.enumerate(n, class.as_str(), req)?;
                if !deep {
                    for (_, i) in &mut found {
                        i.properties
                            .retain(|p| c.property(p.name.as_str()).is_some());
                    }
                }
                self.open_found((id, method), ns, found, Some(shape), &open)?
            }
            Op::OpenEnumerateInstancePaths { class, open } => {
                self.class(n, class.as_str(), CimError::invalid_class)?;
                let found = self.enumerate(n, class.as_str(), req)?;
                self.open_found((id, method), ns, found, None, &open)?
            }
            Op::OpenAssociatorInstances {
                object,
                filter,
                shape,
                open,
            } => {
                let found = self.associators(n, &object, &filter, req)?;
                self.open_found((id, method), ns, found, Some(shape), &open)?
            }
            Op::OpenAssociatorInstancePaths {
                object,
                filter,
                open,
            } => {
                let found = self.associators(n, &object, &filter, req)?;
                self.open_found((id, method), ns, found, None, &open)?
            }
            Op::OpenReferenceInstances {
                object,
                filter,
                shape,
                open,
            } => {
                let found = self.references(n, &object, &filter, req)?;
                self.open_found((id, method), ns, found, Some(shape), &open)?
            }
            Op::OpenReferenceInstancePaths {
                object,
                filter,
                open,
            } => {
                let found = self.references(n, &object, &filter, req)?;
                self.open_found((id, method), ns, found, None, &open)?
            }
            Op::OpenQueryInstances {
                language,
                query,
                open,
            } => {
                let found = self.query(n, req, &language, &query)?;
                let shape = Shape {
                    include_qualifiers: false,
                    include_class_origin: false,
                    property_list: query::parse(&query)?.select,
                };
                self.open(
                    (id, method),
                    ns,
                    found.into_iter().map(|(p, i)| (p, Some(i))).collect(),
                    PullKind::Instances,
                    shape,
                    &open,
                )?
            }
            Op::PullInstances {
                context,
                max_object_count,
            } => self.pull(
                ns,
                &context,
                max_object_count,
                PullKind::Instances,
                id,
                method,
            )?,
            Op::PullInstancesWithPath {
                context,
                max_object_count,
            } => self.pull(
                ns,
                &context,
                max_object_count,
                PullKind::WithPath,
                id,
                method,
            )?,
            Op::PullInstancePaths {
                context,
                max_object_count,
            } => self.pull(ns, &context, max_object_count, PullKind::Paths, id, method)?,
            Op::CloseEnumeration { context } => {
                self.close_context(ns, &context)?;
                void()
            }
        })
    }

    /// Runs a WQL query: the instances of its class that match.
    pub(super) fn query(
        &self,
        n: &Namespace,
        req: &str,
        language: &str,
        text: &str,
    ) -> Result<Vec<Found>, CimError> {
        if !language.eq_ignore_ascii_case("WQL") {
            return Err(CimError::query_language_not_supported(format!(
                "query language {language} is not supported; use WQL"
            )));
        }
        let q = query::parse(text)?;
        let c = n
            .class(&q.class)
            .ok_or_else(|| {
                CimError::invalid_query(format!(
                    "class {} does not exist in namespace {}",
                    q.class, n.name
                ))
            })?
            .clone();
        if let Some(bad) = q.select.iter().flatten().find(|p| c.property(p).is_none()) {
            return Err(CimError::invalid_query(format!(
                "class {} has no property {bad}",
                c.name
            )));
        }
        Ok(self
            .enumerate(n, &q.class, req)?
            .into_iter()
            .filter(|(_, i)| {
                q.cond
                    .as_ref()
                    .map(|cnd| query::matches(cnd, i))
                    .unwrap_or(true)
            })
            .collect())
    }

    pub(super) fn class_list(
        &self,
        n: &Namespace,
        class: Option<&Name>,
        deep: bool,
    ) -> Result<Vec<Name>, CimError> {
        if let Some(c) = class {
            self.class(n, c.as_str(), CimError::invalid_class)?;
        }
        let mut out = n.children(class.map(|c| c.as_str()));
        if deep {
            let mut i = 0;
            while i < out.len() {
                let kids = n.children(Some(out[i].as_str()));
                out.extend(kids);
                i += 1;
            }
        }
        Ok(out)
    }

    pub(super) fn class_objects(
        &self,
        id: &str,
        method: &str,
        ns: &str,
        classes: Vec<Arc<Class>>,
        shape: &Shape,
    ) -> Reply {
        let mut out = Vec::new();
        encode::open(&mut out, id, method, true);
        let es = to_encode_shape(shape);
        encode::ireturn(&mut out, |out| {
            for c in &classes {
                encode::class_with_path_object(out, &self.host, ns, c, &es);
            }
        });
        encode::close(&mut out, true);
        Reply {
            head: out,
            items: None,
            tail: Vec::new(),
            status: 0,
            not_valid: None,
        }
    }

    pub(super) fn class_paths(
        &self,
        id: &str,
        method: &str,
        ns: &str,
        classes: Vec<Arc<Class>>,
    ) -> Reply {
        let mut out = Vec::new();
        encode::open(&mut out, id, method, true);
        encode::ireturn(&mut out, |out| {
            for c in &classes {
                encode::class_object_path(out, &self.host, ns, c.name.as_str());
            }
        });
        encode::close(&mut out, true);
        Reply {
            head: out,
            items: None,
            tail: Vec::new(),
            status: 0,
            not_valid: None,
        }
    }

    /// Runs one extrinsic method call.
    pub fn extrinsic(
        &self,
        id: &str,
        method: &str,
        ns: &str,
        target: ObjectPath,
        params: Vec<Element>,
    ) -> Reply {
        match self.invoke(ns, target, method, params) {
            Ok(r) => {
                let mut out = Vec::new();
                encode::open(&mut out, id, method, false);
                let (m, res) = r;
                encode::return_value(&mut out, &m.return_type, &res.return_value);
                for (name, v) in &res.out {
                    let decl = m.params.iter().find(|p| p.name == *name);
                    let ty = decl.map(|d| d.ty.clone()).unwrap_or_else(|| v.cim_type());
                    let embedded = decl.is_some_and(|d| d.embedded());
                    encode::param_value(&mut out, name.as_str(), ty.xml_name(), embedded, v);
                }
                encode::close(&mut out, false);
                Reply {
                    head: out,
                    items: None,
                    tail: Vec::new(),
                    status: 0,
                    not_valid: None,
                }
            }
            Err(e) => error_reply(id, method, false, &e),
        }
    }

    pub(super) fn invoke(
        &self,
        ns: &str,
        target: ObjectPath,
        method: &str,
        params: Vec<Element>,
    ) -> Result<(Method, MethodResult), CimError> {
        let n = self.ns(ns)?;
        let class = self
            .class(n, target.class.as_str(), CimError::invalid_class)?
            .clone();
        let m = class
            .method(method)
            .ok_or_else(|| {
                CimError::method_not_found(format!("class {} has no method {method}", class.name))
            })?
            .clone();
        let typed_target = if target.keys.is_empty() {
            ObjectPath::class_path(Some(&n.name), class.name.as_str())
        } else {
            let (_, typed) = self.typed_path(n, &target)?;
            self.get_instance(n, &typed, ns.trim_matches('/'))?;
            typed
        };
        let mut typed: Vec<(Name, Option<Value>)> = Vec::new();
        for pv in &params {
            let name = pv
                .attr("NAME")
                .ok_or_else(|| CimError::invalid_parameter("PARAMVALUE without NAME"))?;
            let decl = m.params.iter().find(|p| p.name.is(name)).ok_or_else(|| {
                CimError::invalid_parameter(format!("{method} has no parameter {name}"))
            })?;
            if !decl.is_in() {
                return Err(CimError::invalid_parameter(format!(
                    "{method}: {name} is an output parameter"
                )));
            }
            if typed.iter().any(|(t, _)| t.is(name)) {
                return Err(CimError::invalid_parameter(format!(
                    "{method}: parameter {name} is given twice"
                )));
            }
            let value = match pv.first() {
                None => None,
                Some(v) if decl.embedded() || pv.attr("EmbeddedObject").is_some() => {
                    decode::embedded_value(v).map_err(|e| {
                        CimError::request_not_valid(format!("{method}: {name}: {e}"))
                    })?
                }
                Some(v) => decode::value_of(v, Some(&decl.ty))
                    .map_err(|e| CimError::request_not_valid(format!("{method}: {name}: {e}")))?,
            };
            let value =
                match value {
                    Some(v) => Some(coerce_param(v, &decl.ty, decl.is_array).map_err(|e| {
                        CimError::request_not_valid(format!("{method}: {name}: {e}"))
                    })?),
                    None => None,
                };
            typed.push((decl.name.clone(), value));
        }
        for p in m
            .params
            .iter()
            .filter(|p| p.is_in() && crate::cim::model::has_true(&p.qualifiers, "Required"))
        {
            if !typed.iter().any(|(n, v)| *n == p.name && v.is_some()) {
                return Err(CimError::invalid_parameter(format!(
                    "{method}: required parameter {} is missing",
                    p.name
                )));
            }
        }
        let provider = self.provider(&n.name, &class.name).ok_or_else(|| {
            CimError::method_not_available(format!(
                "method {method} of {} has no provider",
                class.name
            ))
        })?;
        let res = provider.invoke(&self.ctx(ns.trim_matches('/')), &typed_target, &m, typed)?;
        Ok((m, res))
    }
}
