//! The client's side of CIM-XML: writing a method call and reading its
//! response. [`crate::cim::client`] speaks HTTP and knows which calls to
//! make; the elements are written and read only here.

use super::decode::{self, DecodeError, Element};
use super::encode;
use crate::cim::model::{CimType, Instance, ObjectPath, Value};

/// A whole request: `<CIM><MESSAGE ID=id><SIMPLEREQ>` and an IMETHODCALL
/// (intrinsic) or METHODCALL named `method`, around what `inner` writes.
pub fn request(
    id: u64,
    intrinsic: bool,
    method: &str,
    inner: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = encode::XML_DECL.to_vec();
    out.extend_from_slice(b"<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ>");
    let tag: &[u8] = if intrinsic {
        b"IMETHODCALL"
    } else {
        b"METHODCALL"
    };
    out.push(b'<');
    out.extend_from_slice(tag);
    out.extend_from_slice(b" NAME=\"");
    encode::esc(&mut out, method);
    out.extend_from_slice(b"\">");
    inner(&mut out);
    out.extend_from_slice(b"</");
    out.extend_from_slice(tag);
    out.extend_from_slice(b"></SIMPLEREQ></MESSAGE></CIM>");
    out
}

/// `<IPARAMVALUE NAME=name>` around what `body` writes.
fn iparam(out: &mut Vec<u8>, name: &str, body: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"<IPARAMVALUE NAME=\"");
    encode::esc(out, name);
    out.extend_from_slice(b"\">");
    body(out);
    out.extend_from_slice(b"</IPARAMVALUE>");
}

/// An intrinsic parameter holding an instance name.
pub fn iparam_instance_name(out: &mut Vec<u8>, name: &str, p: &ObjectPath) {
    iparam(out, name, |out| encode::instance_name(out, p));
}

/// An intrinsic parameter holding a class name.
pub fn iparam_class(out: &mut Vec<u8>, name: &str, class: &str) {
    iparam(out, name, |out| encode::class_name(out, class));
}

/// An intrinsic parameter holding an array of strings (PropertyList).
pub fn iparam_string_array(out: &mut Vec<u8>, name: &str, items: &[&str]) {
    let v = items.iter().map(|s| Some(Value::String(s.to_string())));
    iparam_value(out, name, &Value::Array(v.collect()));
}

/// An intrinsic parameter holding one value (MaxObjectCount,
/// EnumerationContext).
pub fn iparam_value(out: &mut Vec<u8>, name: &str, v: &Value) {
    iparam(out, name, |out| encode::value(out, v));
}

/// The target of an extrinsic call: a class when `target` has no keys.
pub fn method_target(out: &mut Vec<u8>, ns: &str, target: &ObjectPath) {
    if target.keys.is_empty() {
        out.extend_from_slice(b"<LOCALCLASSPATH>");
        encode::local_namespace_path(out, ns);
        encode::class_name(out, target.class.as_str());
        out.extend_from_slice(b"</LOCALCLASSPATH>");
    } else {
        out.extend_from_slice(b"<LOCALINSTANCEPATH>");
        encode::local_namespace_path(out, ns);
        encode::instance_name(out, target);
        out.extend_from_slice(b"</LOCALINSTANCEPATH>");
    }
}

/// What a response says, or why it cannot be read.
#[derive(Debug)]
pub enum Response<'a> {
    /// The method response element.
    Ok(&'a Element),
    /// The server answered with an error.
    Error { code: u32, description: String },
}

/// The IMETHODRESPONSE (intrinsic) or METHODRESPONSE of a parsed reply.
pub fn response(tree: &Element, intrinsic: bool) -> Result<Response<'_>, DecodeError> {
    let tag = if intrinsic {
        "IMETHODRESPONSE"
    } else {
        "METHODRESPONSE"
    };
    let resp = tree
        .child("MESSAGE")
        .and_then(|m| m.child("SIMPLERSP"))
        .and_then(|s| s.child(tag))
        .ok_or_else(|| DecodeError::NotValid(format!("the reply has no {tag}")))?;
    Ok(match resp.child("ERROR") {
        Some(e) => Response::Error {
            code: e.attr("CODE").and_then(|c| c.parse().ok()).unwrap_or(1),
            description: e.attr("DESCRIPTION").unwrap_or("").to_string(),
        },
        None => Response::Ok(resp),
    })
}

/// An intrinsic response's return value, if it has one.
pub fn ireturn(resp: &Element) -> Option<&Element> {
    resp.child("IRETURNVALUE")
}

/// The one instance a GetInstance returned.
pub fn returned_instance(ret: Option<&Element>) -> Result<Instance, DecodeError> {
    let inst = ret
        .and_then(|r| r.child("INSTANCE"))
        .ok_or_else(|| DecodeError::NotValid("GetInstance returned no INSTANCE".into()))?;
    decode::instance(inst)
}

/// The (local name, instance) pairs of an EnumerateInstances return value.
pub fn named_instances(ret: Option<&Element>) -> Result<Vec<(ObjectPath, Instance)>, DecodeError> {
    ret.iter()
        .flat_map(|r| r.children_named("VALUE.NAMEDINSTANCE"))
        .map(decode::named_instance)
        .collect()
}

/// The (path, instance) pairs of an association's return value.
pub fn objects_with_path(
    ret: Option<&Element>,
) -> Result<Vec<(ObjectPath, Instance)>, DecodeError> {
    ret.iter()
        .flat_map(|r| r.children_named("VALUE.OBJECTWITHPATH"))
        .map(|ow| {
            Ok((
                decode::object_path(ow.need_child("INSTANCEPATH")?)?,
                decode::instance(ow.need_child("INSTANCE")?)?,
            ))
        })
        .collect()
}

/// An extrinsic method's return value and output parameters (those with
/// a value).
pub fn method_return(resp: &Element) -> Result<(Value, Vec<(String, Value)>), DecodeError> {
    let typed = |e: &Element| -> Result<Option<Value>, DecodeError> {
        let ty = e.attr("PARAMTYPE").and_then(CimType::parse);
        Ok(e.first()
            .map(|v| decode::value_of(v, ty.as_ref()))
            .transpose()?
            .flatten())
    };
    let rv = resp.need_child("RETURNVALUE")?;
    let value = typed(rv)?.unwrap_or(Value::Uint32(0));
    let mut out = Vec::new();
    for pv in resp.children_named("PARAMVALUE") {
        if let Some(v) = typed(pv)? {
            out.push((pv.attr("NAME").unwrap_or("").to_string(), v));
        }
    }
    Ok((value, out))
}

/// One page of an Open or Pull of instances with paths: the (path,
/// instance) pairs, and the enumeration context to pull the next page
/// with (None at the end of the sequence).
pub type Page = (Vec<(ObjectPath, Instance)>, Option<String>);

/// The page an Open or Pull response carries.
pub fn pull_page(resp: &Element) -> Result<Page, DecodeError> {
    let items = ireturn(resp)
        .iter()
        .flat_map(|r| r.children_named("VALUE.INSTANCEWITHPATH"))
        .map(|iw| {
            Ok((
                decode::object_path(iw.need_child("INSTANCEPATH")?)?,
                decode::instance(iw.need_child("INSTANCE")?)?,
            ))
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let out_param = |name: &str| {
        resp.children_named("PARAMVALUE")
            .find(|p| p.attr("NAME").is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|p| p.child("VALUE"))
            .map(|v| v.text.trim().to_string())
    };
    let end = out_param("EndOfSequence")
        .ok_or_else(|| DecodeError::NotValid("the reply has no EndOfSequence".into()))?
        .eq_ignore_ascii_case("true");
    let context = if end {
        None
    } else {
        Some(out_param("EnumerationContext").ok_or_else(|| {
            DecodeError::NotValid("the reply goes on but has no EnumerationContext".into())
        })?)
    };
    Ok((items, context))
}
