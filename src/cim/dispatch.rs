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
use super::model::{CimType, Class, Instance, Method, Name, ObjectPath, Value};
use super::ops::{AssocFilter, Op, OpenOpts, Shape};
use super::query;
use super::repo::{Namespace, Repository};
use super::xml::decode::{self, Element};
use super::xml::encode;

mod assoc;
mod ops;
mod pull;
mod reply;

use reply::*;
pub use reply::{error_reply, normalize};

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

    /// An instance of another system (`path` names a host other than this
    /// server's) described from what this provider knows of it, so that
    /// Associators can return the far end of an association that leaves
    /// the system. `None`: nothing known (the caller then returns the
    /// path's keys only).
    fn foreign(&self, _ctx: &Ctx, _class: &Class, _path: &ObjectPath) -> Option<Instance> {
        None
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

    /// The far end of an association that names another host: its path as
    /// given (that host), with what the provider knows of it, or its keys.
    pub(super) fn foreign_instance(
        &self,
        n: &Namespace,
        path: &ObjectPath,
        req: &str,
    ) -> Option<Found> {
        let host = path.host.as_deref()?;
        if host.eq_ignore_ascii_case(&self.host) {
            return None;
        }
        let (class, typed) = self.typed_path(n, path).ok()?;
        let inst = self
            .provider(&n.name, &class.name)
            .and_then(|p| p.foreign(&self.ctx(req), &class, &typed))
            .unwrap_or_else(|| {
                let mut i = Instance::new(class.name.as_str());
                for (k, v) in &typed.keys {
                    let ty = class
                        .property(k.as_str())
                        .map(|p| p.ty.clone())
                        .unwrap_or(CimType::String);
                    i = i.with(k.as_str(), ty, Some(v.clone()));
                }
                i
            });
        let mut at = path.clone();
        at.namespace = Some(n.name.clone());
        Some((at, normalize(&class, inst)))
    }
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
