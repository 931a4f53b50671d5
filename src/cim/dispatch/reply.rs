//! Shaping instances to their class and encoding replies.

use super::*;

pub(super) fn coerce_param(v: Value, ty: &CimType, is_array: bool) -> Result<Value, String> {
    match (v, is_array) {
        (Value::Array(items), true) => Value::Array(items).coerce(ty),
        (Value::Array(_), false) => Err("an array was given for a scalar parameter".into()),
        (v, true) => Value::Array(vec![Some(v)]).coerce(ty),
        (v, false) => v.coerce(ty),
    }
}

pub(super) fn to_encode_shape(s: &Shape) -> encode::Shape<'_> {
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
        props.push(cp.declared(value));
    }
    inst.properties = props;
    inst.class = class.name.clone();
    inst
}

/// Key values typed as the class declares them (as `normalize` does for a
/// whole instance).
pub(super) fn normalize_keys(class: &Class, mut path: ObjectPath) -> ObjectPath {
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
pub(super) fn typed_instance(class: &Class, inst: Instance) -> Result<Instance, CimError> {
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
        out.properties.push(decl.declared(value));
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

pub(super) fn streaming(id: &str, method: &str, items: ItemWriter) -> Reply {
    let mut head = Vec::new();
    encode::open(&mut head, id, method, true);
    head.extend_from_slice(encode::IRETURN_OPEN);
    let mut tail = encode::IRETURN_CLOSE.to_vec();
    encode::close(&mut tail, true);
    Reply {
        head,
        items: Some(items),
        tail,
        status: 0,
        not_valid: None,
    }
}

pub(super) fn objects_with_path(
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
                encode::instance_with_path_object(out, p, &host, inst, &es);
            }
            i = end;
            i < found.len()
        }),
    )
}

pub(super) fn object_paths(id: &str, method: &str, found: Vec<ObjectPath>, host: String) -> Reply {
    let mut i = 0;
    streaming(
        id,
        method,
        Box::new(move |out| {
            let end = (i + 64).min(found.len());
            for p in &found[i..end] {
                encode::instance_object_path(out, p, &host);
            }
            i = end;
            i < found.len()
        }),
    )
}
