//! Encoding CIM-XML responses.
//!
//! Rules every function here keeps (../shared/reference/cimxml.md):
//! * only DTD attributes that pywbem whitelists and wbemcli knows;
//! * explicit end tags for PROPERTY*, QUALIFIER, VALUE, IRETURNVALUE,
//!   INSTANCENAME (wbemcli's parser breaks on self-closed ones);
//! * only the five named entities, no CDATA, no whitespace inside VALUE;
//! * `EmbeddedObject` spelled once, mixed case;
//! * KEYVALUE with both VALUETYPE and TYPE; references as INSTANCEPATH with
//!   HOST when the path knows its namespace.

use crate::cim::model::{
    CimType, Class, Instance, Method, ObjectPath, Property, Qualifier, QualifierDecl, Value,
};

/// Appends `s` with the five XML entities escaped; characters XML 1.0
/// cannot carry become U+FFFD.
pub fn esc(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&apos;",
            b if b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r' => "\u{fffd}".as_bytes(),
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// What an encoded instance or class includes.
#[derive(Clone, Debug, Default)]
pub struct Shape<'a> {
    pub include_qualifiers: bool,
    pub include_class_origin: bool,
    /// Property names to include (None: all).
    pub property_list: Option<&'a [String]>,
}

impl Shape<'_> {
    fn wants(&self, name: &str) -> bool {
        self.property_list
            .map(|l| l.iter().any(|p| p.eq_ignore_ascii_case(name)))
            .unwrap_or(true)
    }
}

pub const XML_DECL: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n";

/// `<?xml?><CIM><MESSAGE><SIMPLERSP><IMETHODRESPONSE NAME=..>`
pub fn open(out: &mut Vec<u8>, id: &str, method: &str, intrinsic: bool) {
    out.extend_from_slice(XML_DECL);
    out.extend_from_slice(b"<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"");
    esc(out, id);
    out.extend_from_slice(b"\" PROTOCOLVERSION=\"1.0\"><SIMPLERSP><");
    out.extend_from_slice(if intrinsic {
        b"IMETHODRESPONSE"
    } else {
        b"METHODRESPONSE"
    });
    out.extend_from_slice(b" NAME=\"");
    esc(out, method);
    out.extend_from_slice(b"\">");
}

pub fn close(out: &mut Vec<u8>, intrinsic: bool) {
    out.extend_from_slice(if intrinsic {
        b"</IMETHODRESPONSE>"
    } else {
        b"</METHODRESPONSE>"
    });
    out.extend_from_slice(b"</SIMPLERSP></MESSAGE></CIM>\n");
}

/// `<ERROR CODE DESCRIPTION></ERROR>` (never with INSTANCE children:
/// wbemcli cannot parse them).
pub fn error(out: &mut Vec<u8>, code: u32, description: &str) {
    out.extend_from_slice(b"<ERROR CODE=\"");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b"\" DESCRIPTION=\"");
    esc(out, description);
    out.extend_from_slice(b"\"></ERROR>");
}

fn attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    esc(out, value);
    out.push(b'"');
}

fn tf(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

pub fn value_text(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => esc(out, s),
        Value::Instance(i) => {
            // Embedded instance: the VALUE text is escaped INSTANCE XML.
            let mut inner = Vec::new();
            instance(&mut inner, i, &Shape::default());
            esc(out, std::str::from_utf8(&inner).expect("utf-8"));
        }
        other => esc(out, &other.to_text()),
    }
}

/// `<VALUE>..</VALUE>`, `<VALUE.ARRAY>..`, or `<VALUE.REFERENCE>..`.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Array(items) => {
            let refs = items
                .iter()
                .flatten()
                .any(|x| matches!(x, Value::Reference(_)));
            out.extend_from_slice(if refs {
                b"<VALUE.REFARRAY>"
            } else {
                b"<VALUE.ARRAY>"
            });
            for it in items {
                match it {
                    Some(x) => value(out, x),
                    None => out.extend_from_slice(b"<VALUE.NULL></VALUE.NULL>"),
                }
            }
            out.extend_from_slice(if refs {
                b"</VALUE.REFARRAY>"
            } else {
                b"</VALUE.ARRAY>"
            });
        }
        Value::Reference(p) => value_reference(out, p),
        v => {
            out.extend_from_slice(b"<VALUE>");
            value_text(out, v);
            out.extend_from_slice(b"</VALUE>");
        }
    }
}

pub fn value_reference(out: &mut Vec<u8>, p: &ObjectPath) {
    out.extend_from_slice(b"<VALUE.REFERENCE>");
    if p.namespace.is_some() {
        instance_path(out, p, None);
    } else {
        instance_name(out, p);
    }
    out.extend_from_slice(b"</VALUE.REFERENCE>");
}

pub fn local_namespace_path(out: &mut Vec<u8>, ns: &str) {
    out.extend_from_slice(b"<LOCALNAMESPACEPATH>");
    for part in ns.split('/').filter(|s| !s.is_empty()) {
        out.extend_from_slice(b"<NAMESPACE NAME=\"");
        esc(out, part);
        out.extend_from_slice(b"\"></NAMESPACE>");
    }
    out.extend_from_slice(b"</LOCALNAMESPACEPATH>");
}

fn namespace_path(out: &mut Vec<u8>, host: &str, ns: &str) {
    out.extend_from_slice(b"<NAMESPACEPATH><HOST>");
    esc(out, host);
    out.extend_from_slice(b"</HOST>");
    local_namespace_path(out, ns);
    out.extend_from_slice(b"</NAMESPACEPATH>");
}

pub fn instance_name(out: &mut Vec<u8>, p: &ObjectPath) {
    out.extend_from_slice(b"<INSTANCENAME");
    attr(out, "CLASSNAME", p.class.as_str());
    out.push(b'>');
    for (k, v) in &p.keys {
        out.extend_from_slice(b"<KEYBINDING");
        attr(out, "NAME", k.as_str());
        out.push(b'>');
        match v {
            Value::Reference(r) => value_reference(out, r),
            v => {
                let ty = v.cim_type();
                out.extend_from_slice(b"<KEYVALUE");
                attr(out, "VALUETYPE", ty.value_type());
                attr(out, "TYPE", ty.xml_name());
                out.push(b'>');
                value_text(out, v);
                out.extend_from_slice(b"</KEYVALUE>");
            }
        }
        out.extend_from_slice(b"</KEYBINDING>");
    }
    out.extend_from_slice(b"</INSTANCENAME>");
}

/// INSTANCEPATH with HOST; `default_host` when the path has none.
pub fn instance_path(out: &mut Vec<u8>, p: &ObjectPath, default_host: Option<&str>) {
    out.extend_from_slice(b"<INSTANCEPATH>");
    let host = p.host.as_deref().or(default_host).unwrap_or("localhost");
    namespace_path(out, host, p.namespace.as_deref().unwrap_or("root/cimv2"));
    instance_name(out, p);
    out.extend_from_slice(b"</INSTANCEPATH>");
}

pub fn class_path(out: &mut Vec<u8>, host: &str, ns: &str, class: &str) {
    out.extend_from_slice(b"<CLASSPATH>");
    namespace_path(out, host, ns);
    out.extend_from_slice(b"<CLASSNAME");
    attr(out, "NAME", class);
    out.extend_from_slice(b"></CLASSNAME></CLASSPATH>");
}

pub fn qualifier(out: &mut Vec<u8>, q: &Qualifier) {
    out.extend_from_slice(b"<QUALIFIER");
    attr(out, "NAME", q.name.as_str());
    attr(out, "TYPE", q.ty.xml_name());
    if q.propagated {
        attr(out, "PROPAGATED", "true");
    }
    if !q.flavor.overridable {
        attr(out, "OVERRIDABLE", "false");
    }
    if !q.flavor.tosubclass {
        attr(out, "TOSUBCLASS", "false");
    }
    if q.flavor.translatable {
        attr(out, "TRANSLATABLE", "true");
    }
    out.push(b'>');
    if let Some(v) = &q.value {
        value(out, v);
    }
    out.extend_from_slice(b"</QUALIFIER>");
}

pub fn qualifier_decl(out: &mut Vec<u8>, q: &QualifierDecl) {
    out.extend_from_slice(b"<QUALIFIER.DECLARATION");
    attr(out, "NAME", q.name.as_str());
    attr(out, "TYPE", q.ty.xml_name());
    attr(out, "ISARRAY", tf(q.is_array));
    if let Some(n) = q.array_size {
        attr(out, "ARRAYSIZE", &n.to_string());
    }
    attr(out, "OVERRIDABLE", tf(q.flavor.overridable));
    attr(out, "TOSUBCLASS", tf(q.flavor.tosubclass));
    attr(out, "TRANSLATABLE", tf(q.flavor.translatable));
    out.extend_from_slice(b"><SCOPE");
    let all = q.scopes.iter().any(|s| s == "any");
    for s in [
        "class",
        "association",
        "reference",
        "property",
        "method",
        "parameter",
        "indication",
    ] {
        if all || q.scopes.iter().any(|x| x == s) {
            attr(out, &s.to_ascii_uppercase(), "true");
        }
    }
    out.extend_from_slice(b"></SCOPE>");
    if let Some(v) = &q.default {
        value(out, v);
    }
    out.extend_from_slice(b"</QUALIFIER.DECLARATION>");
}

/// NAME, then REFERENCECLASS or TYPE, then ARRAYSIZE (given for arrays):
/// the attributes a property and a parameter share.
fn typed_name(out: &mut Vec<u8>, name: &str, ty: &CimType, array_size: Option<Option<u32>>) {
    attr(out, "NAME", name);
    match ty {
        CimType::Reference(c) => {
            if let Some(c) = c {
                attr(out, "REFERENCECLASS", c.as_str());
            }
        }
        t => attr(out, "TYPE", t.xml_name()),
    }
    if let Some(Some(n)) = array_size {
        attr(out, "ARRAYSIZE", &n.to_string());
    }
}

/// PROPERTY, PROPERTY.ARRAY or PROPERTY.REFERENCE.
pub fn property(out: &mut Vec<u8>, p: &Property, shape: &Shape<'_>) {
    let (tag, closing): (&[u8], &[u8]) = match (&p.ty, p.is_array) {
        (CimType::Reference(_), _) => (b"<PROPERTY.REFERENCE", b"</PROPERTY.REFERENCE>"),
        (_, true) => (b"<PROPERTY.ARRAY", b"</PROPERTY.ARRAY>"),
        _ => (b"<PROPERTY", b"</PROPERTY>"),
    };
    out.extend_from_slice(tag);
    let size = p.is_array.then_some(p.array_size);
    typed_name(out, p.name.as_str(), &p.ty, size);
    if shape.include_class_origin {
        if let Some(o) = &p.class_origin {
            attr(out, "CLASSORIGIN", o.as_str());
        }
    }
    if p.propagated && shape.include_class_origin {
        attr(out, "PROPAGATED", "true");
    }
    if p.embedded.is_some() && !p.is_array {
        attr(out, "EmbeddedObject", p.embedded.unwrap_or("instance"));
    }
    out.push(b'>');
    if shape.include_qualifiers {
        for q in &p.qualifiers {
            qualifier(out, q);
        }
    }
    if let Some(v) = &p.value {
        value(out, v);
    }
    out.extend_from_slice(closing);
}

/// `<INSTANCE CLASSNAME=..>` with its properties.
pub fn instance(out: &mut Vec<u8>, inst: &Instance, shape: &Shape<'_>) {
    out.extend_from_slice(b"<INSTANCE");
    attr(out, "CLASSNAME", inst.class.as_str());
    out.push(b'>');
    for p in inst
        .properties
        .iter()
        .filter(|p| shape.wants(p.name.as_str()))
    {
        property(out, p, shape);
    }
    out.extend_from_slice(b"</INSTANCE>");
}

fn method(out: &mut Vec<u8>, m: &Method, shape: &Shape<'_>) {
    out.extend_from_slice(b"<METHOD");
    attr(out, "NAME", m.name.as_str());
    attr(out, "TYPE", m.return_type.xml_name());
    if shape.include_class_origin {
        if let Some(o) = &m.class_origin {
            attr(out, "CLASSORIGIN", o.as_str());
        }
        if m.propagated {
            attr(out, "PROPAGATED", "true");
        }
    }
    out.push(b'>');
    if shape.include_qualifiers {
        for q in &m.qualifiers {
            qualifier(out, q);
        }
    }
    for p in &m.params {
        let (tag, close): (&[u8], &[u8]) = match (&p.ty, p.is_array) {
            (CimType::Reference(_), true) => (b"<PARAMETER.REFARRAY", b"</PARAMETER.REFARRAY>"),
            (CimType::Reference(_), false) => (b"<PARAMETER.REFERENCE", b"</PARAMETER.REFERENCE>"),
            (_, true) => (b"<PARAMETER.ARRAY", b"</PARAMETER.ARRAY>"),
            _ => (b"<PARAMETER", b"</PARAMETER>"),
        };
        out.extend_from_slice(tag);
        let size = p.is_array.then_some(p.array_size);
        typed_name(out, p.name.as_str(), &p.ty, size);
        out.push(b'>');
        if shape.include_qualifiers {
            for q in &p.qualifiers {
                qualifier(out, q);
            }
        }
        out.extend_from_slice(close);
    }
    out.extend_from_slice(b"</METHOD>");
}

/// `<CLASS NAME SUPERCLASS>`; `local_only` drops inherited members.
pub fn class(out: &mut Vec<u8>, c: &Class, shape: &Shape<'_>, local_only: bool) {
    out.extend_from_slice(b"<CLASS");
    attr(out, "NAME", c.name.as_str());
    if let Some(s) = &c.superclass {
        attr(out, "SUPERCLASS", s.as_str());
    }
    out.push(b'>');
    if shape.include_qualifiers {
        for q in c
            .qualifiers
            .iter()
            .filter(|q| !(local_only && q.propagated))
        {
            qualifier(out, q);
        }
    }
    for p in c
        .properties
        .iter()
        .filter(|p| !(local_only && p.propagated) && shape.wants(p.name.as_str()))
    {
        property(out, p, shape);
    }
    for m in c.methods.iter().filter(|m| !(local_only && m.propagated)) {
        method(out, m, shape);
    }
    out.extend_from_slice(b"</CLASS>");
}

/// The start and end of an intrinsic method's return value, for replies
/// that stream their items between the two.
pub const IRETURN_OPEN: &[u8] = b"<IRETURNVALUE>";
pub const IRETURN_CLOSE: &[u8] = b"</IRETURNVALUE>";

/// `<IRETURNVALUE>` around what `body` writes.
pub fn ireturn(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(IRETURN_OPEN);
    body(out);
    out.extend_from_slice(IRETURN_CLOSE);
}

/// `<CLASSNAME NAME=..></CLASSNAME>`
pub fn class_name(out: &mut Vec<u8>, class: &str) {
    out.extend_from_slice(b"<CLASSNAME");
    attr(out, "NAME", class);
    out.extend_from_slice(b"></CLASSNAME>");
}

/// An instance with its local name (EnumerateInstances).
pub fn named_instance(out: &mut Vec<u8>, path: &ObjectPath, inst: &Instance, shape: &Shape<'_>) {
    out.extend_from_slice(b"<VALUE.NAMEDINSTANCE>");
    instance_name(out, path);
    instance(out, inst, shape);
    out.extend_from_slice(b"</VALUE.NAMEDINSTANCE>");
}

/// An instance with its full path (associations, queries).
pub fn instance_with_path_object(
    out: &mut Vec<u8>,
    path: &ObjectPath,
    host: &str,
    inst: &Instance,
    shape: &Shape<'_>,
) {
    with_path(out, "VALUE.OBJECTWITHPATH", path, host, inst, shape);
}

/// An instance with its path inside element `tag`.
fn with_path(
    out: &mut Vec<u8>,
    tag: &str,
    path: &ObjectPath,
    host: &str,
    inst: &Instance,
    shape: &Shape<'_>,
) {
    out.push(b'<');
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
    instance_path(out, path, Some(host));
    instance(out, inst, shape);
    out.extend_from_slice(b"</");
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
}

/// A class with its full path (associations from a class).
pub fn class_with_path_object(
    out: &mut Vec<u8>,
    host: &str,
    ns: &str,
    c: &Class,
    shape: &Shape<'_>,
) {
    out.extend_from_slice(b"<VALUE.OBJECTWITHPATH>");
    class_path(out, host, ns, c.name.as_str());
    class(out, c, shape, false);
    out.extend_from_slice(b"</VALUE.OBJECTWITHPATH>");
}

/// An instance with its full path (the pull operations).
pub fn instance_with_path(
    out: &mut Vec<u8>,
    path: &ObjectPath,
    host: &str,
    inst: &Instance,
    shape: &Shape<'_>,
) {
    with_path(out, "VALUE.INSTANCEWITHPATH", path, host, inst, shape);
}

/// `<OBJECTPATH>` of an instance.
pub fn instance_object_path(out: &mut Vec<u8>, path: &ObjectPath, host: &str) {
    out.extend_from_slice(b"<OBJECTPATH>");
    instance_path(out, path, Some(host));
    out.extend_from_slice(b"</OBJECTPATH>");
}

/// `<OBJECTPATH>` of a class.
pub fn class_object_path(out: &mut Vec<u8>, host: &str, ns: &str, class: &str) {
    out.extend_from_slice(b"<OBJECTPATH>");
    class_path(out, host, ns, class);
    out.extend_from_slice(b"</OBJECTPATH>");
}

/// An extrinsic method's return value.
pub fn return_value(out: &mut Vec<u8>, ty: &CimType, v: &Value) {
    out.extend_from_slice(b"<RETURNVALUE");
    attr(out, "PARAMTYPE", ty.xml_name());
    out.push(b'>');
    value(out, v);
    out.extend_from_slice(b"</RETURNVALUE>");
}

/// One parameter, in a method call or as an output parameter; `embedded`
/// when the string holds an embedded instance.
pub fn param_value(out: &mut Vec<u8>, name: &str, ty: &str, embedded: bool, v: &Value) {
    out.extend_from_slice(b"<PARAMVALUE");
    attr(out, "NAME", name);
    attr(out, "PARAMTYPE", ty);
    if embedded {
        attr(out, "EmbeddedObject", "instance");
    }
    out.push(b'>');
    value(out, v);
    out.extend_from_slice(b"</PARAMVALUE>");
}

/// The output parameters every open and pull operation returns.
pub fn pull_end(out: &mut Vec<u8>, context: Option<&str>) {
    param_value(
        out,
        "EndOfSequence",
        "boolean",
        false,
        &Value::Boolean(context.is_none()),
    );
    param_value(
        out,
        "EnumerationContext",
        "string",
        false,
        &Value::String(context.unwrap_or("").to_string()),
    );
}
