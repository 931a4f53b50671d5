//! The dispatcher: one generic main provider for everything the repository
//! holds, and a narrow [`Provider`] trait for dynamic classes (in the style
//! of pywbem_mock's MainProvider / ProviderDispatcher).
//!
//! The dispatcher validates before any provider runs: the namespace exists,
//! the class exists, keys are exactly the class's keys with values coerced
//! to the key types, created properties exist and fit their types, method
//! parameters exist, are typed from the class definition (wbemcli sends them
//! untyped) and include every Required one. Providers are told, per method,
//! what is already checked and what they must check.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::CimError;
use super::model::{CimType, Class, Instance, Method, Name, ObjectPath, Property, Value};
use super::ops::{AssocFilter, Op, OpenOpts, Shape};
use super::query;
use super::repo::{Namespace, Repository};
use super::xml::decode::{self, Element};
use super::xml::encode;

/// What a provider call knows about its request.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The namespace as the client named it (an alias stays an alias).
    pub namespace: String,
    pub host: String,
}

impl Ctx {
    /// The value `make` gives, made once per CIM request and shared by every
    /// provider call the request makes (GetInstance, or the many calls of an
    /// association walk), so that one request reads one consistent state.
    /// Outside a request (a provider called directly) it is made each time.
    pub fn per_request<T: Any + Send + Sync>(
        &self,
        key: &'static str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let found = SCOPE.with(|s| {
            s.borrow()
                .as_ref()
                .and_then(|m| m.get(key).cloned())
                .and_then(|v| v.downcast::<T>().ok())
        });
        if let Some(v) = found {
            return v;
        }
        let v = Arc::new(make());
        SCOPE.with(|s| {
            if let Some(m) = s.borrow_mut().as_mut() {
                m.insert(key, v.clone() as Arc<dyn Any + Send + Sync>);
            }
        });
        v
    }
}

type Scope = HashMap<&'static str, Arc<dyn Any + Send + Sync>>;

thread_local! {
    /// The values of the request running on this thread (a request runs
    /// start to end on one thread: dispatch is synchronous).
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// The request scope while it lives; dropping it forgets the values.
struct InRequest;

impl InRequest {
    fn enter() -> InRequest {
        SCOPE.with(|s| *s.borrow_mut() = Some(HashMap::new()));
        InRequest
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        SCOPE.with(|s| *s.borrow_mut() = None);
    }
}

/// The result of an extrinsic method.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodResult {
    pub return_value: Value,
    pub out: Vec<(Name, Value)>,
}

/// A provider of instances, associations and methods for dynamic classes.
///
/// Every method may assume what the dispatcher already checked, listed on
/// each method; anything else is the provider's job. Providers are called
/// on the server's request path and must not block for long: long work
/// belongs in a job (CIM_ConcreteJob).
pub trait Provider: Send + Sync {
    /// The (namespace, exact class) pairs this provider serves.
    fn classes(&self) -> Vec<(String, Name)>;

    /// Instances of exactly `class`.
    /// Already checked: the namespace and class exist and are served here.
    /// Must: return complete instances whose key properties are set.
    fn enumerate(&self, ctx: &Ctx, class: &Name) -> Result<Vec<Instance>, CimError>;

    /// The instance at `path`.
    /// Already checked: namespace, class served here, keys are exactly the
    /// class keys with typed values.
    /// Must: CIM_ERR_NOT_FOUND when there is no such instance.
    /// The default enumerates and compares, O(instances): a provider with
    /// many instances should look them up by key instead.
    fn get(&self, ctx: &Ctx, class: &Class, path: &ObjectPath) -> Result<Instance, CimError> {
        let found = self.enumerate(ctx, &path.class)?;
        found
            .into_iter()
            .find(|i| i.path(class, &ctx.namespace, None).same_instance(path))
            .ok_or_else(|| CimError::not_found(format!("{path}")))
    }

    /// The instances of exactly association class `class` that may refer
    /// to `object`, found by the object's keys. A superset is fine: the
    /// caller checks every reference. The default, `None`, has the caller
    /// enumerate the class, O(instances): a provider with many association
    /// instances should index the walks consoles make.
    fn referring(
        &self,
        _ctx: &Ctx,
        _class: &Name,
        _object: &ObjectPath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        Ok(None)
    }

    /// Creates an instance. Already checked: the class is served here,
    /// every property exists in it and fits its type.
    /// Must: refuse duplicates (CIM_ERR_ALREADY_EXISTS), return the new path.
    fn create(
        &self,
        _ctx: &Ctx,
        _class: &Class,
        _instance: Instance,
    ) -> Result<ObjectPath, CimError> {
        Err(CimError::not_supported(
            "this class does not accept CreateInstance",
        ))
    }

    /// Modifies an instance. Already checked as for `create`, and the
    /// instance exists. Must: apply only `property_list` when given.
    fn modify(
        &self,
        _ctx: &Ctx,
        _class: &Class,
        _path: &ObjectPath,
        _instance: Instance,
        _property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        Err(CimError::not_supported(
            "this class does not accept ModifyInstance",
        ))
    }

    /// Deletes an instance. Already checked: keys, and that it exists.
    fn delete(&self, _ctx: &Ctx, _class: &Class, _path: &ObjectPath) -> Result<(), CimError> {
        Err(CimError::not_supported(
            "this class does not accept DeleteInstance",
        ))
    }

    /// Invokes an extrinsic method.
    /// Already checked: the method exists in the target's class, the target
    /// instance exists (for instance methods), every parameter is an IN
    /// parameter of the method with a value of its declared type, and every
    /// Required parameter is present.
    /// Must: check the values make sense; return the declared OUT params.
    fn invoke(
        &self,
        _ctx: &Ctx,
        _target: &ObjectPath,
        method: &Method,
        _params: Vec<(Name, Option<Value>)>,
    ) -> Result<MethodResult, CimError> {
        Err(CimError::method_not_available(format!(
            "method {} has no provider",
            method.name
        )))
    }
}

/// Encodes the next items of a large result into a buffer; false when done.
pub type ItemWriter = Box<dyn FnMut(&mut Vec<u8>) -> bool + Send>;

/// A response body: fixed head and tail around items encoded on demand, so
/// the server can stream large results instead of building them whole.
pub struct Reply {
    pub head: Vec<u8>,
    pub items: Option<ItemWriter>,
    pub tail: Vec<u8>,
    /// The CIM status, for logs (0 for success).
    pub status: u32,
    /// Set when the request turned out not to be valid CIM-XML: the
    /// server answers HTTP 400 `request-not-valid` with this text instead.
    pub not_valid: Option<String>,
}

impl Reply {
    /// The whole body at once (small replies, tests).
    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.head);
        if let Some(mut w) = self.items.take() {
            while w(&mut out) {}
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

/// What a pull sequence returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PullKind {
    /// VALUE.INSTANCEWITHPATH (Open*Instances, PullInstancesWithPath).
    WithPath,
    /// INSTANCEPATH (Open*Paths, PullInstancePaths).
    Paths,
    /// INSTANCE (OpenQueryInstances, PullInstances).
    Instances,
}

struct EnumContext {
    namespace: String,
    kind: PullKind,
    items: VecDeque<(ObjectPath, Option<Instance>)>,
    shape: Shape,
    timeout: Duration,
    expires: Instant,
}

/// Limits the dispatcher enforces.
#[derive(Clone, Copy, Debug)]
pub struct DispatchLimits {
    pub max_contexts: usize,
}

impl Default for DispatchLimits {
    fn default() -> Self {
        DispatchLimits { max_contexts: 1024 }
    }
}

/// The dispatcher: repository, providers and enumeration contexts.
pub struct Dispatcher {
    repo: Repository,
    host: String,
    providers: Vec<Arc<dyn Provider>>,
    by_class: HashMap<(String, Name), usize>,
    contexts: Mutex<HashMap<String, EnumContext>>,
    next_context: AtomicU64,
    limits: DispatchLimits,
}

fn ns_key(ns: &str) -> String {
    let n = ns.trim_matches('/').to_ascii_lowercase();
    if n == super::repo::INTEROP_ALIAS {
        super::repo::INTEROP.to_string()
    } else {
        n
    }
}

type Found = (ObjectPath, Instance);
/// An instance as its source returned it, with the class it belongs to.
type Raw = (Arc<Class>, Instance);

impl Dispatcher {
    pub fn new(repo: Repository, host: &str) -> Dispatcher {
        Dispatcher {
            repo,
            host: host.to_string(),
            providers: Vec::new(),
            by_class: HashMap::new(),
            contexts: Mutex::new(HashMap::new()),
            next_context: AtomicU64::new(1),
            limits: DispatchLimits::default(),
        }
    }

    /// Sets the dispatcher's limits (open enumeration contexts).
    pub fn set_limits(&mut self, limits: DispatchLimits) {
        self.limits = limits;
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Registers a provider for the classes it names. Unknown namespaces or
    /// classes are a configuration error.
    pub fn register(&mut self, p: Arc<dyn Provider>) -> Result<(), String> {
        let idx = self.providers.len();
        for (ns, class) in p.classes() {
            let n = self
                .repo
                .namespace(&ns)
                .ok_or_else(|| format!("provider names unknown namespace {ns}"))?;
            if n.class(class.as_str()).is_none() {
                return Err(format!("provider names unknown class {class} in {ns}"));
            }
            self.by_class.insert((ns_key(&ns), class), idx);
        }
        self.providers.push(p);
        Ok(())
    }

    fn ns(&self, ns: &str) -> Result<&Namespace, CimError> {
        self.repo.namespace(ns).ok_or_else(|| {
            CimError::invalid_namespace(format!(
                "namespace {ns} does not exist (root/cimv2 and root/interop do)"
            ))
        })
    }

    fn ctx(&self, ns: &str) -> Ctx {
        Ctx {
            namespace: ns.trim_matches('/').to_string(),
            host: self.host.clone(),
        }
    }

    fn class<'a>(
        &self,
        n: &'a Namespace,
        class: &str,
        code: fn(String) -> CimError,
    ) -> Result<&'a Arc<Class>, CimError> {
        n.class(class).ok_or_else(|| {
            code(format!(
                "class {class} does not exist in namespace {}",
                n.name
            ))
        })
    }

    fn provider(&self, ns: &str, class: &Name) -> Option<&Arc<dyn Provider>> {
        self.by_class
            .get(&(ns_key(ns), class.clone()))
            .map(|i| &self.providers[*i])
    }

    /// Instances of exactly `class` as their sources hold them (static ones
    /// plus the provider's), each with its class; not yet normalized.
    fn raw_instances_of(
        &self,
        n: &Namespace,
        class: &Arc<Class>,
        req: &str,
    ) -> Result<Vec<Raw>, CimError> {
        self.raw_instances_near(n, class, None, req)
    }

    /// Raw instances of exactly `class`; with `object`, only those the
    /// provider finds may refer to it (every one if it does not index it).
    fn raw_instances_near(
        &self,
        n: &Namespace,
        class: &Arc<Class>,
        object: Option<&ObjectPath>,
        req: &str,
    ) -> Result<Vec<Raw>, CimError> {
        let mut out: Vec<Raw> = n
            .instances_of(&class.name)
            .map(|i| (class.clone(), i.clone()))
            .collect();
        if let Some(p) = self.provider(&n.name, &class.name) {
            let ctx = self.ctx(req);
            let found = match object {
                Some(o) => p.referring(&ctx, &class.name, o)?,
                None => None,
            };
            let found = match found {
                Some(found) => found,
                None => p.enumerate(&ctx, &class.name)?,
            };
            for i in found {
                let cls = if i.class == class.name {
                    class.clone()
                } else {
                    self.class(n, i.class.as_str(), CimError::failed)?.clone()
                };
                out.push((cls, i));
            }
        }
        Ok(out)
    }

    /// Path and class-shaped instance of a raw instance.
    fn finish(&self, ns: &str, (class, inst): Raw) -> Found {
        (
            inst.path(&class, ns, Some(&self.host)),
            normalize(&class, inst),
        )
    }

    /// Raw instances of `class` and its subclasses.
    fn raw_enumerate(&self, n: &Namespace, class: &str, req: &str) -> Result<Vec<Raw>, CimError> {
        let mut out = Vec::new();
        for c in n.subtree(class) {
            let cls = n.class(c.as_str()).expect("listed");
            out.extend(self.raw_instances_of(n, cls, req)?);
        }
        Ok(out)
    }

    /// Paths of the instances of `class` and its subclasses, keys typed by
    /// their class. Static instances give their keys without being copied.
    fn enumerate_names(
        &self,
        n: &Namespace,
        class: &str,
        req: &str,
    ) -> Result<Vec<ObjectPath>, CimError> {
        let mut out = Vec::new();
        for c in n.subtree(class) {
            let cls = n.class(c.as_str()).expect("listed");
            out.extend(
                n.instances_of(&cls.name)
                    .map(|i| normalize_keys(cls, i.path(cls, &n.name, None))),
            );
            if let Some(p) = self.provider(&n.name, &cls.name) {
                for i in p.enumerate(&self.ctx(req), &cls.name)? {
                    let ic = if i.class == cls.name {
                        cls.clone()
                    } else {
                        self.class(n, i.class.as_str(), CimError::failed)?.clone()
                    };
                    out.push(normalize_keys(&ic, i.path(&ic, &n.name, None)));
                }
            }
        }
        Ok(out)
    }

    /// Instances of `class` and its subclasses.
    fn enumerate(&self, n: &Namespace, class: &str, req: &str) -> Result<Vec<Found>, CimError> {
        Ok(self
            .raw_enumerate(n, class, req)?
            .into_iter()
            .map(|r| self.finish(&n.name, r))
            .collect())
    }

    /// Checks and types the keys of `path` against its class.
    fn typed_path(
        &self,
        n: &Namespace,
        path: &ObjectPath,
    ) -> Result<(Arc<Class>, ObjectPath), CimError> {
        let class = self
            .class(n, path.class.as_str(), CimError::invalid_class)?
            .clone();
        let mut keys = Vec::new();
        for k in class.keys() {
            let v = path.key(k.name.as_str()).ok_or_else(|| {
                CimError::invalid_parameter(format!(
                    "{path}: key {} of {} is missing",
                    k.name, class.name
                ))
            })?;
            let v = v
                .clone()
                .coerce(&k.ty)
                .map_err(|e| CimError::invalid_parameter(format!("{path}: key {}: {e}", k.name)))?;
            keys.push((k.name.clone(), v));
        }
        if let Some((extra, _)) = path
            .keys
            .iter()
            .find(|(kn, _)| class.keys().all(|k| k.name != *kn))
        {
            return Err(CimError::invalid_parameter(format!(
                "{path}: {extra} is not a key of {}",
                class.name
            )));
        }
        let typed = ObjectPath {
            host: None,
            namespace: Some(n.name.clone()),
            class: class.name.clone(),
            keys,
        };
        Ok((class, typed))
    }

    fn get_instance(&self, n: &Namespace, path: &ObjectPath, req: &str) -> Result<Found, CimError> {
        let (class, typed) = self.typed_path(n, path)?;
        let ns = n.name.as_str();
        if let Some(i) = n.static_instance(&class, &typed) {
            return Ok((
                i.path(&class, ns, Some(&self.host)),
                normalize(&class, i.clone()),
            ));
        }
        if let Some(p) = self.provider(ns, &class.name) {
            let i = p.get(&self.ctx(req), &class, &typed)?;
            return Ok((i.path(&class, ns, Some(&self.host)), normalize(&class, i)));
        }
        Err(CimError::not_found(format!("no instance {typed}")))
    }

    // ----- associations ---------------------------------------------------

    fn check_class_param(
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
    fn referencing(
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

    fn references(
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

    fn associators(
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
                    Err(e) if e.code == 6 => continue, // dangling reference (e.g. to a peer)
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
    fn class_assoc(
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

    // ----- pull ---------------------------------------------------------------

    /// Opens a pull enumeration of found instances: with their paths when
    /// a `shape` is given, paths only otherwise.
    fn open_found(
        &self,
        idm: (&str, &str),
        ns: &str,
        found: Vec<Found>,
        shape: Option<Shape>,
        opts: &OpenOpts,
    ) -> Result<Reply, CimError> {
        match shape {
            Some(shape) => {
                let items = found.into_iter().map(|(p, i)| (p, Some(i))).collect();
                self.open(idm, ns, items, PullKind::WithPath, shape, opts)
            }
            None => {
                let items = found.into_iter().map(|(p, _)| (p, None)).collect();
                self.open(idm, ns, items, PullKind::Paths, Shape::default(), opts)
            }
        }
    }

    fn open(
        &self,
        (id, method): (&str, &str),
        ns: &str,
        items: Vec<(ObjectPath, Option<Instance>)>,
        kind: PullKind,
        shape: Shape,
        opts: &OpenOpts,
    ) -> Result<Reply, CimError> {
        let mut items: VecDeque<_> = items.into();
        let first: Vec<_> = items
            .drain(..(opts.max_object_count as usize).min(items.len()))
            .collect();
        let context = if items.is_empty() {
            None
        } else {
            let mut ctxs = self.contexts.lock().expect("not poisoned");
            let now = Instant::now();
            ctxs.retain(|_, c| c.expires > now);
            if ctxs.len() >= self.limits.max_contexts {
                return Err(CimError::server_limits_exceeded(format!(
                    "too many open enumeration contexts ({}); close some or let them expire",
                    ctxs.len()
                )));
            }
            let n = self.next_context.fetch_add(1, Ordering::Relaxed);
            let key = format!(
                "rcm-{n:x}-{:x}",
                now.elapsed().as_nanos() as u64 ^ (n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            );
            let timeout = Duration::from_secs(opts.operation_timeout as u64);
            ctxs.insert(
                key.clone(),
                EnumContext {
                    namespace: ns_key(ns),
                    kind,
                    items,
                    shape: shape.clone(),
                    timeout,
                    expires: now + timeout,
                },
            );
            Some(key)
        };
        Ok(self.pull_reply(id, method, first, kind, &shape, context))
    }

    fn pull(
        &self,
        ns: &str,
        context: &str,
        max: u32,
        kind: PullKind,
        id: &str,
        method: &str,
    ) -> Result<Reply, CimError> {
        let mut ctxs = self.contexts.lock().expect("not poisoned");
        let now = Instant::now();
        ctxs.retain(|_, c| c.expires > now);
        let c = ctxs.get_mut(context).ok_or_else(|| {
            CimError::invalid_enumeration_context(format!(
                "enumeration context {context} does not exist, was closed, or expired"
            ))
        })?;
        if c.namespace != ns_key(ns) || c.kind != kind {
            return Err(CimError::invalid_enumeration_context(format!(
                "enumeration context {context} belongs to another namespace or operation"
            )));
        }
        let batch: Vec<_> = c.items.drain(..(max as usize).min(c.items.len())).collect();
        c.expires = now + c.timeout;
        let shape = c.shape.clone();
        let next = if c.items.is_empty() {
            ctxs.remove(context);
            None
        } else {
            Some(context.to_string())
        };
        Ok(self.pull_reply(id, method, batch, kind, &shape, next))
    }

    fn pull_reply(
        &self,
        id: &str,
        method: &str,
        items: Vec<(ObjectPath, Option<Instance>)>,
        kind: PullKind,
        shape: &Shape,
        context: Option<String>,
    ) -> Reply {
        let mut out = Vec::new();
        encode::open(&mut out, id, method, true);
        if !items.is_empty() {
            out.extend_from_slice(b"<IRETURNVALUE>");
            let es = to_encode_shape(shape);
            for (path, inst) in &items {
                match (kind, inst) {
                    (PullKind::Paths, _) => encode::instance_path(&mut out, path, Some(&self.host)),
                    (PullKind::WithPath, Some(inst)) => {
                        out.extend_from_slice(b"<VALUE.INSTANCEWITHPATH>");
                        encode::instance_path(&mut out, path, Some(&self.host));
                        encode::instance(&mut out, inst, &es);
                        out.extend_from_slice(b"</VALUE.INSTANCEWITHPATH>");
                    }
                    (PullKind::Instances, Some(inst)) => encode::instance(&mut out, inst, &es),
                    (_, None) => {}
                }
            }
            out.extend_from_slice(b"</IRETURNVALUE>");
        }
        let eos = context.is_none();
        out.extend_from_slice(b"<PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>");
        out.extend_from_slice(if eos { b"TRUE" } else { b"FALSE" });
        out.extend_from_slice(b"</VALUE></PARAMVALUE><PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"><VALUE>");
        if let Some(c) = &context {
            encode::esc(&mut out, c);
        }
        out.extend_from_slice(b"</VALUE></PARAMVALUE>");
        encode::close(&mut out, true);
        Reply {
            head: out,
            items: None,
            tail: Vec::new(),
            status: 0,
            not_valid: None,
        }
    }

    /// Closes a context. Unknown contexts are CIM_ERR_INVALID_ENUMERATION_CONTEXT.
    fn close_context(&self, ns: &str, context: &str) -> Result<(), CimError> {
        let mut ctxs = self.contexts.lock().expect("not poisoned");
        match ctxs.get(context) {
            Some(c) if c.namespace == ns_key(ns) => {
                ctxs.remove(context);
                Ok(())
            }
            _ => Err(CimError::invalid_enumeration_context(format!(
                "enumeration context {context} does not exist"
            ))),
        }
    }

    // ----- entry points ----------------------------------------------------

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
    fn related(
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

    fn run(&self, id: &str, method: &str, ns_name: &str, op: Op) -> Result<Reply, CimError> {
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
                small(&|out| {
                    out.extend_from_slice(b"<IRETURNVALUE>");
                    encode::class(out, &c, &es, local_only);
                    out.extend_from_slice(b"</IRETURNVALUE>");
                })
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
                    out.extend_from_slice(b"<IRETURNVALUE>");
                    for c in &list {
                        out.extend_from_slice(b"<CLASSNAME NAME=\"");
                        encode::esc(out, c.as_str());
                        out.extend_from_slice(b"\"></CLASSNAME>");
                    }
                    out.extend_from_slice(b"</IRETURNVALUE>");
                })
            }
            Op::GetQualifier { name } => {
                let q = n
                    .qualifier(name.as_str())
                    .ok_or_else(|| {
                        CimError::not_found(format!("qualifier {name} is not declared in {ns}"))
                    })?
                    .clone();
                small(&|out| {
                    out.extend_from_slice(b"<IRETURNVALUE>");
                    encode::qualifier_decl(out, &q);
                    out.extend_from_slice(b"</IRETURNVALUE>");
                })
            }
            Op::EnumerateQualifiers => {
                let qs: Vec<_> = n.qualifiers().cloned().collect();
                small(&|out| {
                    out.extend_from_slice(b"<IRETURNVALUE>");
                    for q in &qs {
                        encode::qualifier_decl(out, q);
                    }
                    out.extend_from_slice(b"</IRETURNVALUE>");
                })
            }
            Op::GetInstance { path, shape } => {
                let (_, inst) = self.get_instance(n, &path, req)?;
                let es = to_encode_shape(&shape);
                small(&|out| {
                    out.extend_from_slice(b"<IRETURNVALUE>");
                    encode::instance(out, &inst, &es);
                    out.extend_from_slice(b"</IRETURNVALUE>");
                })
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
                            out.extend_from_slice(b"<VALUE.NAMEDINSTANCE>");
                            encode::instance_name(out, &path);
                            encode::instance(out, &inst, &es);
                            out.extend_from_slice(b"</VALUE.NAMEDINSTANCE>");
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
                small(&|out| {
                    out.extend_from_slice(b"<IRETURNVALUE>");
                    encode::instance_name(out, &path);
                    out.extend_from_slice(b"</IRETURNVALUE>");
                })
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
    fn query(
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

    fn class_list(
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

    fn class_objects(
        &self,
        id: &str,
        method: &str,
        ns: &str,
        classes: Vec<Arc<Class>>,
        shape: &Shape,
    ) -> Reply {
        let mut out = Vec::new();
        encode::open(&mut out, id, method, true);
        out.extend_from_slice(b"<IRETURNVALUE>");
        let es = to_encode_shape(shape);
        for c in &classes {
            out.extend_from_slice(b"<VALUE.OBJECTWITHPATH>");
            encode::class_path(&mut out, &self.host, ns, c.name.as_str());
            encode::class(&mut out, c, &es, false);
            out.extend_from_slice(b"</VALUE.OBJECTWITHPATH>");
        }
        out.extend_from_slice(b"</IRETURNVALUE>");
        encode::close(&mut out, true);
        Reply {
            head: out,
            items: None,
            tail: Vec::new(),
            status: 0,
            not_valid: None,
        }
    }

    fn class_paths(&self, id: &str, method: &str, ns: &str, classes: Vec<Arc<Class>>) -> Reply {
        let mut out = Vec::new();
        encode::open(&mut out, id, method, true);
        out.extend_from_slice(b"<IRETURNVALUE>");
        for c in &classes {
            out.extend_from_slice(b"<OBJECTPATH>");
            encode::class_path(&mut out, &self.host, ns, c.name.as_str());
            out.extend_from_slice(b"</OBJECTPATH>");
        }
        out.extend_from_slice(b"</IRETURNVALUE>");
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
                out.extend_from_slice(b"<RETURNVALUE PARAMTYPE=\"");
                out.extend_from_slice(m.return_type.xml_name().as_bytes());
                out.extend_from_slice(b"\">");
                encode::value(&mut out, &res.return_value);
                out.extend_from_slice(b"</RETURNVALUE>");
                for (name, v) in &res.out {
                    let decl = m.params.iter().find(|p| p.name == *name);
                    let ty = decl.map(|d| d.ty.clone()).unwrap_or_else(|| v.cim_type());
                    out.extend_from_slice(b"<PARAMVALUE NAME=\"");
                    encode::esc(&mut out, name.as_str());
                    out.extend_from_slice(b"\" PARAMTYPE=\"");
                    out.extend_from_slice(ty.xml_name().as_bytes());
                    out.push(b'"');
                    if decl.is_some_and(|d| d.embedded()) {
                        out.extend_from_slice(b" EmbeddedObject=\"instance\"");
                    }
                    out.push(b'>');
                    encode::value(&mut out, v);
                    out.extend_from_slice(b"</PARAMVALUE>");
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

    fn invoke(
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
            .filter(|p| p.is_in() && super::model::has_true(&p.qualifiers, "Required"))
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

fn coerce_param(v: Value, ty: &CimType, is_array: bool) -> Result<Value, String> {
    match (v, is_array) {
        (Value::Array(items), true) => Value::Array(items).coerce(ty),
        (Value::Array(_), false) => Err("an array was given for a scalar parameter".into()),
        (v, true) => Value::Array(vec![Some(v)]).coerce(ty),
        (v, false) => v.coerce(ty),
    }
}

fn to_encode_shape(s: &Shape) -> encode::Shape<'_> {
    encode::Shape {
        include_qualifiers: s.include_qualifiers,
        include_class_origin: s.include_class_origin,
        property_list: s.property_list.as_deref(),
    }
}

/// An instance laid out as its class: every class property in class order,
/// typed and with its class origin; values the instance does not set are
/// NULL (or the class default for static instances already filled in).
pub fn normalize(class: &Class, mut inst: Instance) -> Instance {
    let mut props = Vec::with_capacity(class.properties.len());
    for cp in &class.properties {
        let value = inst
            .properties
            .iter_mut()
            .find(|p| p.name == cp.name)
            .and_then(|p| p.value.take())
            .map(|v| {
                v.coerce(&cp.ty)
                    .unwrap_or_else(|_| Value::String(String::new()))
            });
        props.push(Property {
            value,
            qualifiers: Vec::new(),
            ..cp.clone()
        });
    }
    inst.properties = props;
    inst.class = class.name.clone();
    inst
}

/// Key values typed as the class declares them (as `normalize` does for a
/// whole instance).
fn normalize_keys(class: &Class, mut path: ObjectPath) -> ObjectPath {
    for (k, v) in path.keys.iter_mut() {
        if let Some(decl) = class.property(k.as_str()) {
            if let Ok(t) = v.clone().coerce(&decl.ty) {
                *v = t;
            }
        }
    }
    path
}

/// Checks an instance sent by a client against its class.
fn typed_instance(class: &Class, inst: Instance) -> Result<Instance, CimError> {
    let mut out = Instance::new(class.name.as_str());
    for p in inst.properties {
        let decl = class.property(p.name.as_str()).ok_or_else(|| {
            CimError::no_such_property(format!("class {} has no property {}", class.name, p.name))
        })?;
        let value = match p.value {
            Some(v) => Some(v.coerce(&decl.ty).map_err(|e| {
                CimError::type_mismatch(format!("{}.{}: {e}", class.name, decl.name))
            })?),
            None => None,
        };
        out.properties.push(Property {
            value,
            qualifiers: Vec::new(),
            ..decl.clone()
        });
    }
    Ok(out)
}

/// An error reply (HTTP 200 with ERROR).
pub fn error_reply(id: &str, method: &str, intrinsic: bool, e: &CimError) -> Reply {
    let mut out = Vec::new();
    encode::open(&mut out, id, method, intrinsic);
    encode::error(&mut out, e.code, &e.to_string());
    encode::close(&mut out, intrinsic);
    Reply {
        head: out,
        items: None,
        tail: Vec::new(),
        status: e.code,
        not_valid: e.not_valid.then(|| e.description.clone()),
    }
}

fn streaming(id: &str, method: &str, items: ItemWriter) -> Reply {
    let mut head = Vec::new();
    encode::open(&mut head, id, method, true);
    head.extend_from_slice(b"<IRETURNVALUE>");
    let mut tail = b"</IRETURNVALUE>".to_vec();
    encode::close(&mut tail, true);
    Reply {
        head,
        items: Some(items),
        tail,
        status: 0,
        not_valid: None,
    }
}

fn objects_with_path(
    id: &str,
    method: &str,
    found: Vec<Found>,
    shape: Shape,
    host: String,
) -> Reply {
    let mut i = 0;
    streaming(
        id,
        method,
        Box::new(move |out| {
            let es = to_encode_shape(&shape);
            let end = (i + 32).min(found.len());
            for (p, inst) in &found[i..end] {
                out.extend_from_slice(b"<VALUE.OBJECTWITHPATH>");
                encode::instance_path(out, p, Some(&host));
                encode::instance(out, inst, &es);
                out.extend_from_slice(b"</VALUE.OBJECTWITHPATH>");
            }
            i = end;
            i < found.len()
        }),
    )
}

fn object_paths(id: &str, method: &str, found: Vec<ObjectPath>, host: String) -> Reply {
    let mut i = 0;
    streaming(
        id,
        method,
        Box::new(move |out| {
            let end = (i + 64).min(found.len());
            for p in &found[i..end] {
                out.extend_from_slice(b"<OBJECTPATH>");
                encode::instance_path(out, p, Some(&host));
                out.extend_from_slice(b"</OBJECTPATH>");
            }
            i = end;
            i < found.len()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A per-request value is made once per request, shared by every call
    /// inside it, and made afresh by the next request (and on every call
    /// outside any request).
    #[test]
    fn per_request_values_are_made_once_per_request() {
        let ctx = Ctx {
            namespace: "root/cimv2".into(),
            host: "h".into(),
        };
        let made = AtomicU64::new(0);
        let make = || made.fetch_add(1, Ordering::SeqCst);
        ctx.per_request("k", make);
        ctx.per_request("k", make);
        assert_eq!(made.load(Ordering::SeqCst), 2, "outside a request");
        for request in 0..2u64 {
            let _scope = InRequest::enter();
            let a = ctx.per_request("k", make);
            let b = ctx.per_request("k", make);
            assert_eq!(a, b);
            assert_eq!(*a, 2 + request);
            // Another key is another value.
            let c = ctx.per_request("other", || "x".to_string());
            assert_eq!(*c, "x");
        }
        assert_eq!(made.load(Ordering::SeqCst), 4);
    }
}
