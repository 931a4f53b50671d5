//! Decoding CIM-XML requests (DSP0201) from bytes.
//!
//! Step one builds a small element tree with hard limits (depth, element
//! count; no DOCTYPE, so no entity expansion of any kind). Step two reads
//! the DSP0201 envelope and values out of the tree. Nothing here touches a
//! socket.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::cim::model::{CimType, Instance, Name, ObjectPath, Property, Value};

/// Limits on what a request may contain.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 48,
            max_elements: 200_000,
        }
    }
}

/// Why a request body could not be decoded. Each maps to an HTTP 400 with a
/// DSP0200 `CIMError` header, or 501 for unsupported versions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request is not well-formed XML: {0}")]
    NotWellFormed(String),
    #[error("request is not valid CIM-XML: {0}")]
    NotValid(String),
    #[error("unsupported CIMVERSION {0} (2.x is supported)")]
    CimVersion(String),
    #[error("unsupported DTDVERSION {0} (2.x is supported)")]
    DtdVersion(String),
    #[error("unsupported PROTOCOLVERSION {0} (1.x is supported)")]
    ProtocolVersion(String),
    #[error("multiple requests (MULTIREQ) are not supported")]
    MultiRequest,
}

impl DecodeError {
    /// The DSP0200 CIMError header value and HTTP status.
    pub fn cim_error(&self) -> (u16, &'static str) {
        match self {
            DecodeError::NotWellFormed(_) => (400, "request-not-well-formed"),
            DecodeError::NotValid(_) => (400, "request-not-valid"),
            DecodeError::CimVersion(_) => (501, "unsupported-cim-version"),
            DecodeError::DtdVersion(_) => (501, "unsupported-dtd-version"),
            DecodeError::ProtocolVersion(_) => (501, "unsupported-protocol-version"),
            DecodeError::MultiRequest => (501, "multiple-requests-unsupported"),
        }
    }
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::NotValid(msg.into()))
}

/// One XML element.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Attribute by name (ASCII case-insensitive, as clients vary).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn need_attr(&self, name: &str) -> Result<&str, DecodeError> {
        self.attr(name)
            .ok_or_else(|| DecodeError::NotValid(format!("{} needs a {name} attribute", self.name)))
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn need_child(&self, name: &str) -> Result<&Element, DecodeError> {
        self.child(name)
            .ok_or_else(|| DecodeError::NotValid(format!("{} needs a {name} element", self.name)))
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first child element, if any.
    pub fn first(&self) -> Option<&Element> {
        self.children.first()
    }
}

/// Parses a document into an element tree.
pub fn parse_tree(body: &[u8], limits: Limits) -> Result<Element, DecodeError> {
    let nwf = |e: String| DecodeError::NotWellFormed(e);
    let mut reader = Reader::from_reader(body);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| nwf(e.to_string()))?;
        match ev {
            Event::Start(s) => {
                count += 1;
                if count > limits.max_elements {
                    return invalid(format!("more than {} elements", limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return invalid(format!("elements nested deeper than {}", limits.max_depth));
                }
                if root.is_some() {
                    return Err(nwf("content after the root element".into()));
                }
                let name = String::from_utf8(s.name().as_ref().to_vec())
                    .map_err(|_| nwf("element name is not UTF-8".into()))?;
                let mut attrs = Vec::new();
                for a in s.attributes() {
                    let a = a.map_err(|e| nwf(e.to_string()))?;
                    let k = String::from_utf8(a.key.as_ref().to_vec())
                        .map_err(|_| nwf("attribute name is not UTF-8".into()))?;
                    let v = a
                        .unescape_value()
                        .map_err(|e| nwf(e.to_string()))?
                        .into_owned();
                    attrs.push((k, v));
                }
                stack.push(Element {
                    name,
                    attrs,
                    ..Default::default()
                });
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| nwf("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| nwf(e.to_string()))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(nwf("text outside the root element".into())),
                }
            }
            Event::CData(c) => {
                let text = String::from_utf8(c.into_inner().to_vec())
                    .map_err(|_| nwf("CDATA is not UTF-8".into()))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::DocType(_) => {
                return invalid("DOCTYPE declarations are not accepted (no entity definitions)")
            }
            Event::Decl(d) => {
                // The XML declaration is optional; one without a version
                // is not XML.
                if d.version().is_err() {
                    return invalid("the XML declaration has no version");
                }
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Empty(_) => unreachable!("empty elements are expanded"),
            Event::Eof => break,
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(nwf(format!(
            "element {} is not closed",
            stack.last().map(|e| e.name.as_str()).unwrap_or("")
        )));
    }
    root.ok_or_else(|| nwf("empty document".into()))
}

/// An intrinsic or extrinsic method call, as decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Intrinsic {
        namespace: String,
        method: String,
        params: Vec<(String, Element)>,
    },
    Extrinsic {
        namespace: String,
        /// Instance path, or class path (no keys) for static methods.
        target: ObjectPath,
        method: String,
        params: Vec<Element>,
    },
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: String,
    /// MESSAGE PROTOCOLVERSION, for the CIMProtocolVersion header check.
    pub protocol_version: String,
    pub call: Call,
}

/// `major.<digits>` (DSP0201 versions: CIMVERSION and DTDVERSION 2.x,
/// PROTOCOLVERSION 1.x).
fn version_is(v: &str, major: &str) -> bool {
    v.strip_prefix(major)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

fn namespace_of(lnp: &Element) -> Result<String, DecodeError> {
    if lnp.name != "LOCALNAMESPACEPATH" {
        return invalid(format!("expected LOCALNAMESPACEPATH, found {}", lnp.name));
    }
    let parts: Vec<&str> = lnp
        .children_named("NAMESPACE")
        .map(|n| n.need_attr("NAME"))
        .collect::<Result<_, _>>()?;
    if parts.is_empty() {
        return invalid("LOCALNAMESPACEPATH has no NAMESPACE");
    }
    Ok(parts.join("/"))
}

/// Reads the envelope of a request document.
pub fn request(body: &[u8], limits: Limits) -> Result<Request, DecodeError> {
    let root = parse_tree(body, limits)?;
    if root.name != "CIM" {
        return invalid(format!("root element is {}, not CIM", root.name));
    }
    let cv = root.need_attr("CIMVERSION")?;
    if !version_is(cv, "2") {
        return Err(DecodeError::CimVersion(cv.to_string()));
    }
    let dv = root.need_attr("DTDVERSION")?;
    if !version_is(dv, "2") {
        return Err(DecodeError::DtdVersion(dv.to_string()));
    }
    let msg = root.need_child("MESSAGE")?;
    let id = msg.need_attr("ID")?.to_string();
    let pv = msg.need_attr("PROTOCOLVERSION")?;
    if !version_is(pv, "1") {
        return Err(DecodeError::ProtocolVersion(pv.to_string()));
    }
    let protocol_version = pv.to_string();
    if msg.child("MULTIREQ").is_some() {
        return Err(DecodeError::MultiRequest);
    }
    let req = msg.need_child("SIMPLEREQ")?;
    if let Some(call) = req.child("IMETHODCALL") {
        let method = call.need_attr("NAME")?.to_string();
        let namespace = namespace_of(call.need_child("LOCALNAMESPACEPATH")?)?;
        let mut params = Vec::new();
        for p in call.children_named("IPARAMVALUE") {
            params.push((p.need_attr("NAME")?.to_string(), p.clone()));
        }
        return Ok(Request {
            id,
            protocol_version,
            call: Call::Intrinsic {
                namespace,
                method,
                params,
            },
        });
    }
    if let Some(call) = req.child("METHODCALL") {
        let method = call.need_attr("NAME")?.to_string();
        let (namespace, target) = if let Some(lip) = call.child("LOCALINSTANCEPATH") {
            let ns = namespace_of(lip.need_child("LOCALNAMESPACEPATH")?)?;
            let mut p = instance_name(lip.need_child("INSTANCENAME")?)?;
            p.namespace = Some(ns.clone());
            (ns, p)
        } else if let Some(lcp) = call.child("LOCALCLASSPATH") {
            let ns = namespace_of(lcp.need_child("LOCALNAMESPACEPATH")?)?;
            let class = lcp.need_child("CLASSNAME")?.need_attr("NAME")?;
            (ns.clone(), ObjectPath::class_path(Some(&ns), class))
        } else {
            return invalid("METHODCALL needs LOCALINSTANCEPATH or LOCALCLASSPATH");
        };
        let params = call.children_named("PARAMVALUE").cloned().collect();
        return Ok(Request {
            id,
            protocol_version,
            call: Call::Extrinsic {
                namespace,
                target,
                method,
                params,
            },
        });
    }
    invalid("SIMPLEREQ needs IMETHODCALL or METHODCALL")
}

/// INSTANCENAME -> path (class and keys; no namespace).
pub fn instance_name(e: &Element) -> Result<ObjectPath, DecodeError> {
    if e.name != "INSTANCENAME" {
        return invalid(format!("expected INSTANCENAME, found {}", e.name));
    }
    let class = e.need_attr("CLASSNAME")?;
    let mut keys = Vec::new();
    for kb in e.children_named("KEYBINDING") {
        let name = kb.need_attr("NAME")?;
        let v = match kb.first() {
            Some(kv) if kv.name == "KEYVALUE" => key_value(kv)?,
            Some(r) if r.name == "VALUE.REFERENCE" => Value::reference(value_reference(r)?),
            _ => {
                return invalid(format!(
                    "KEYBINDING {name} needs KEYVALUE or VALUE.REFERENCE"
                ))
            }
        };
        keys.push((Name::new(name), v));
    }
    Ok(ObjectPath {
        host: None,
        namespace: None,
        class: Name::new(class),
        keys,
    })
}

fn key_value(kv: &Element) -> Result<Value, DecodeError> {
    if let Some(t) = kv.attr("TYPE").filter(|t| !t.is_empty()) {
        let ty = CimType::parse(t)
            .ok_or_else(|| DecodeError::NotValid(format!("unknown KEYVALUE TYPE {t}")))?;
        return Value::parse_scalar(&ty, &kv.text).map_err(DecodeError::NotValid);
    }
    // Untyped (wbemcli): keep the text; it is typed from the class later.
    Ok(match kv.attr("VALUETYPE").unwrap_or("string") {
        "boolean" => {
            Value::parse_scalar(&CimType::Boolean, &kv.text).map_err(DecodeError::NotValid)?
        }
        _ => Value::String(kv.text.clone()),
    })
}

/// VALUE.REFERENCE -> path.
pub fn value_reference(e: &Element) -> Result<ObjectPath, DecodeError> {
    let inner = e
        .first()
        .ok_or_else(|| DecodeError::NotValid("empty VALUE.REFERENCE".into()))?;
    object_path(inner)
}

/// Any of the path elements DSP0201 allows in a reference.
pub fn object_path(inner: &Element) -> Result<ObjectPath, DecodeError> {
    match inner.name.as_str() {
        "INSTANCENAME" => instance_name(inner),
        "LOCALINSTANCEPATH" => {
            let mut p = instance_name(inner.need_child("INSTANCENAME")?)?;
            p.namespace = Some(namespace_of(inner.need_child("LOCALNAMESPACEPATH")?)?);
            Ok(p)
        }
        "INSTANCEPATH" => {
            let nsp = inner.need_child("NAMESPACEPATH")?;
            let mut p = instance_name(inner.need_child("INSTANCENAME")?)?;
            p.host = nsp.child("HOST").map(|h| h.text.trim().to_string());
            p.namespace = Some(namespace_of(nsp.need_child("LOCALNAMESPACEPATH")?)?);
            Ok(p)
        }
        "CLASSNAME" => Ok(ObjectPath::class_path(None, inner.need_attr("NAME")?)),
        "LOCALCLASSPATH" => Ok(ObjectPath::class_path(
            Some(&namespace_of(inner.need_child("LOCALNAMESPACEPATH")?)?),
            inner.need_child("CLASSNAME")?.need_attr("NAME")?,
        )),
        "CLASSPATH" => {
            let nsp = inner.need_child("NAMESPACEPATH")?;
            let mut p = ObjectPath::class_path(
                Some(&namespace_of(nsp.need_child("LOCALNAMESPACEPATH")?)?),
                inner.need_child("CLASSNAME")?.need_attr("NAME")?,
            );
            p.host = nsp.child("HOST").map(|h| h.text.trim().to_string());
            Ok(p)
        }
        other => invalid(format!("{other} is not an object path")),
    }
}

/// A value as sent, typed only where the XML says so. Untyped scalars come
/// back as `Value::String` and are coerced to the declared type later.
pub fn value_of(e: &Element, declared: Option<&CimType>) -> Result<Option<Value>, DecodeError> {
    let typed = |text: &str| -> Result<Value, DecodeError> {
        match declared {
            Some(t) if !matches!(t, CimType::String | CimType::Reference(_)) => {
                Value::parse_scalar(t, text).map_err(DecodeError::NotValid)
            }
            _ => Ok(Value::String(text.to_string())),
        }
    };
    Ok(Some(match e.name.as_str() {
        "VALUE" => typed(&e.text)?,
        "VALUE.NULL" => return Ok(None),
        "VALUE.ARRAY" => Value::Array(
            e.children
                .iter()
                .map(|c| match c.name.as_str() {
                    "VALUE" => typed(&c.text).map(Some),
                    "VALUE.NULL" => Ok(None),
                    other => invalid(format!("{other} inside VALUE.ARRAY")),
                })
                .collect::<Result<_, _>>()?,
        ),
        "VALUE.REFERENCE" => Value::reference(value_reference(e)?),
        "VALUE.REFARRAY" => Value::Array(
            e.children
                .iter()
                .map(|c| match c.name.as_str() {
                    "VALUE.REFERENCE" => value_reference(c).map(|p| Some(Value::reference(p))),
                    "VALUE.NULL" => Ok(None),
                    other => invalid(format!("{other} inside VALUE.REFARRAY")),
                })
                .collect::<Result<_, _>>()?,
        ),
        "INSTANCENAME" => Value::reference(instance_name(e)?),
        "CLASSNAME" => Value::String(e.need_attr("NAME")?.to_string()),
        "INSTANCE" => Value::Instance(Box::new(instance(e)?)),
        other => return invalid(format!("{other} is not a value")),
    }))
}

/// INSTANCE -> instance; property values are typed by their TYPE attribute.
pub fn instance(e: &Element) -> Result<Instance, DecodeError> {
    if e.name != "INSTANCE" {
        return invalid(format!("expected INSTANCE, found {}", e.name));
    }
    let mut inst = Instance::new(e.need_attr("CLASSNAME")?);
    for p in &e.children {
        let name = match p.name.as_str() {
            "PROPERTY" | "PROPERTY.ARRAY" | "PROPERTY.REFERENCE" => p.need_attr("NAME")?,
            "QUALIFIER" => continue,
            other => return invalid(format!("{other} inside INSTANCE")),
        };
        if inst.properties.iter().any(|q| q.name.is(name)) {
            return invalid(format!("property {name} is given twice"));
        }
        let (ty, is_array) = match p.name.as_str() {
            "PROPERTY.REFERENCE" => (
                CimType::Reference(p.attr("REFERENCECLASS").map(Name::new)),
                false,
            ),
            n => {
                let t = p.need_attr("TYPE")?;
                (
                    CimType::parse(t)
                        .ok_or_else(|| DecodeError::NotValid(format!("unknown TYPE {t}")))?,
                    n == "PROPERTY.ARRAY",
                )
            }
        };
        let embedded = p.attr("EmbeddedObject").is_some();
        let value = match p.children.iter().find(|c| c.name.starts_with("VALUE")) {
            Some(v) if embedded => embedded_value(v)?,
            Some(v) => value_of(v, Some(&ty))?,
            None => None,
        };
        inst.properties.push(Property {
            is_array,
            embedded: embedded.then_some("instance"),
            ..Property::new(name, ty, value)
        });
    }
    Ok(inst)
}

/// A VALUE holding escaped INSTANCE XML (EmbeddedObject), or an array of them.
pub fn embedded_value(v: &Element) -> Result<Option<Value>, DecodeError> {
    let one = |text: &str| -> Result<Value, DecodeError> {
        let tree = parse_tree(text.as_bytes(), Limits::default())?;
        Ok(Value::Instance(Box::new(instance(&tree)?)))
    };
    match v.name.as_str() {
        "VALUE" if v.text.trim().is_empty() => Ok(None),
        "VALUE" => one(&v.text).map(Some),
        "VALUE.ARRAY" => Ok(Some(Value::Array(
            v.children_named("VALUE")
                .map(|c| one(&c.text).map(Some))
                .collect::<Result<_, _>>()?,
        ))),
        _ => value_of(v, None),
    }
}

/// An intrinsic parameter's value as one of the shapes DSP0201 allows
/// there; `Err` names the element found instead.
pub enum ParamShape<'a> {
    /// No value (a NULL parameter).
    Empty,
    /// `<VALUE>`: its text.
    Text(&'a str),
    /// `<CLASSNAME NAME=..>`: the name, if the attribute is there.
    ClassName(Option<&'a str>),
    /// `<VALUE.ARRAY>`: the text of each VALUE.
    TextArray(Vec<&'a str>),
    /// `<VALUE.NAMEDINSTANCE>`.
    NamedInstance(&'a Element),
    /// Any other element, by name (the caller says what it wanted).
    Other(&'a str),
}

/// The shape of an IPARAMVALUE's content.
pub fn param_shape(e: &Element) -> ParamShape<'_> {
    match e.first() {
        None => ParamShape::Empty,
        Some(v) => match v.name.as_str() {
            "VALUE" => ParamShape::Text(&v.text),
            "CLASSNAME" => ParamShape::ClassName(v.attr("NAME")),
            "VALUE.ARRAY" => {
                ParamShape::TextArray(v.children_named("VALUE").map(|x| x.text.trim()).collect())
            }
            "VALUE.NAMEDINSTANCE" => ParamShape::NamedInstance(v),
            other => ParamShape::Other(other),
        },
    }
}

/// A VALUE.NAMEDINSTANCE: its name and instance.
pub fn named_instance(ni: &Element) -> Result<(ObjectPath, Instance), DecodeError> {
    Ok((
        instance_name(ni.need_child("INSTANCENAME")?)?,
        instance(ni.need_child("INSTANCE")?)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_wbemcli_get_instance() {
        let body = br#"<?xml version="1.0" encoding="utf-8" ?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="4711" PROTOCOLVERSION="1.0"><SIMPLEREQ>
<IMETHODCALL NAME="GetInstance"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"></NAMESPACE><NAMESPACE NAME="cimv2"></NAMESPACE></LOCALNAMESPACEPATH>
<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="CIM_Foo">
 <KEYBINDING NAME="Name"><KEYVALUE VALUETYPE="string">a &amp; b</KEYVALUE></KEYBINDING>
 <KEYBINDING NAME="Id"><KEYVALUE VALUETYPE="numeric">3</KEYVALUE></KEYBINDING>
 <KEYBINDING NAME="Flag"><KEYVALUE VALUETYPE="boolean">true</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>
</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;
        let r = request(body, Limits::default()).unwrap();
        assert_eq!(r.id, "4711");
        let Call::Intrinsic {
            namespace,
            method,
            params,
        } = r.call
        else {
            panic!()
        };
        assert_eq!(
            (namespace.as_str(), method.as_str()),
            ("root/cimv2", "GetInstance")
        );
        let p = instance_name(params[0].1.first().unwrap()).unwrap();
        assert_eq!(p.key("name"), Some(&Value::String("a & b".into())));
        assert_eq!(p.key("Flag"), Some(&Value::Boolean(true)));
    }

    #[test]
    fn refuses_doctype_depth_and_garbage() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><CIM>&lol2;</CIM>"#;
        assert!(
            matches!(parse_tree(bomb, Limits::default()), Err(DecodeError::NotValid(m)) if m.contains("DOCTYPE"))
        );
        let deep = format!("{}{}", "<A>".repeat(100), "</A>".repeat(100));
        assert!(
            matches!(parse_tree(deep.as_bytes(), Limits::default()), Err(DecodeError::NotValid(m)) if m.contains("deeper"))
        );
        assert!(matches!(
            parse_tree(b"<CIM><A></CIM>", Limits::default()),
            Err(DecodeError::NotWellFormed(_))
        ));
        assert!(matches!(
            parse_tree(b"<CIM>&undefined;</CIM>", Limits::default()),
            Err(DecodeError::NotWellFormed(_))
        ));
        let wrong = br#"<CIM CIMVERSION="3.0" DTDVERSION="2.0"></CIM>"#;
        assert!(matches!(
            request(wrong, Limits::default()),
            Err(DecodeError::CimVersion(_))
        ));
    }
}
