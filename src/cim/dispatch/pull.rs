//! Pull operations (DSP0200 Open/Pull/Close): enumeration contexts,
//! their limits and expiry.

use super::*;

impl Dispatcher {
    /// Opens a pull enumeration of found instances: with their paths when
    /// a `shape` is given, paths only otherwise.
    pub(super) fn open_found(
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

    pub(super) fn open(
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

    pub(super) fn pull(
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

    pub(super) fn pull_reply(
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
            let es = to_encode_shape(shape);
            let host = self.host.as_str();
            encode::ireturn(&mut out, |out| {
                for (path, inst) in &items {
                    match (kind, inst) {
                        (PullKind::Paths, _) => encode::instance_path(out, path, Some(host)),
                        (PullKind::WithPath, Some(inst)) => {
                            encode::instance_with_path(out, path, host, inst, &es)
                        }
                        (PullKind::Instances, Some(inst)) => encode::instance(out, inst, &es),
                        (_, None) => {}
                    }
                }
            });
        }
        encode::pull_end(&mut out, context.as_deref());
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
    pub(super) fn close_context(&self, ns: &str, context: &str) -> Result<(), CimError> {
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
}
