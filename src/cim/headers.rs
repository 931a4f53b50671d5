//! DSP0200's CIM headers, checked against the request they travel with:
//! `CIMMethod` names the method in the body and `CIMObject` its target
//! (the namespace of an intrinsic call; the class or instance path of an
//! extrinsic one). A header that is missing, repeated, badly encoded or
//! that disagrees with the body is a `header-mismatch` (HTTP 400).
//!
//! Clients write `CIMObject` differently: pywbem sends it unencoded with
//! the keys in alphabetical order, wbemcli percent-encodes `/` and `:` only,
//! OpenPegasus' own tests encode everything. So the value is percent-
//! decoded (and, if that fails, read as it is), parsed into namespace,
//! class and keys, and compared by meaning: names without case, keys as a
//! set, references without their host.

use super::model::{ObjectPath, Value};
use super::xml::decode::Call;

/// Percent-decodes `s`; None when an escape is not two hex digits.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (hi, lo) = (
                b.get(i + 1).and_then(|c| hex(*c))?,
                b.get(i + 2).and_then(|c| hex(*c))?,
            );
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A path as `CIMObject` writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderPath {
    pub namespace: String,
    /// Class and keys; None for a namespace alone (intrinsic calls).
    pub target: Option<(String, Vec<(String, Key)>)>,
}

/// A key's value as text, or a reference.
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Text(String),
    Ref(Box<HeaderPath>),
}

fn norm_ns(ns: &str) -> String {
    ns.trim_matches('/').to_ascii_lowercase()
}

/// Parses `namespace[:Class[.key=value,...]]`. A reference value is a
/// quoted path, with or without `//host` and a leading `/`.
pub fn parse(s: &str) -> Result<HeaderPath, String> {
    let s = s.trim();
    let (ns, rest) = match s.find(':') {
        Some(i) if !s[..i].contains('"') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    };
    if ns.is_empty() || ns.contains(['"', '=', ',', ' ']) {
        return Err(format!("no namespace in {s:?}"));
    }
    let Some(rest) = rest else {
        return Ok(HeaderPath {
            namespace: ns.to_string(),
            target: None,
        });
    };
    let (class, keys) = match rest.find('.') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if class.is_empty()
        || !class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!("no class name in {s:?}"));
    }
    let mut out = Vec::new();
    if let Some(k) = keys {
        let b = k.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let eq = k[i..]
                .find('=')
                .map(|p| i + p)
                .ok_or_else(|| format!("key without a value in {s:?}"))?;
            let name = k[i..eq].trim();
            if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(format!("bad key name {name:?} in {s:?}"));
            }
            i = eq + 1;
            let value = if b.get(i) == Some(&b'"') {
                // A quoted string, with \" and \\ escaped.
                let mut v = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(format!("unterminated string in {s:?}")),
                        Some(b'\\') => {
                            let c = k[i + 1..]
                                .chars()
                                .next()
                                .ok_or_else(|| format!("unterminated escape in {s:?}"))?;
                            v.push(c);
                            i += 1 + c.len_utf8();
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            let c = k[i..].chars().next().expect("in range");
                            v.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                if v.starts_with('/') {
                    let path = v
                        .strip_prefix("//")
                        .map_or(v.as_str(), |h| h.find('/').map_or("", |p| &h[p..]));
                    Key::Ref(Box::new(parse(path.trim_start_matches('/'))?))
                } else {
                    Key::Text(v)
                }
            } else {
                let end = k[i..].find(',').map_or(b.len(), |p| i + p);
                let v = k[i..end].trim();
                if v.is_empty() || v.contains(['"', '=']) {
                    return Err(format!("bad key value in {s:?}"));
                }
                i = end;
                Key::Text(v.to_string())
            };
            out.push((name.to_string(), value));
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(format!("text after a key value in {s:?}")),
            }
        }
    }
    Ok(HeaderPath {
        namespace: ns.to_string(),
        target: Some((class.to_string(), out)),
    })
}

fn key_of(v: &Value) -> Option<Key> {
    Some(match v {
        Value::Reference(p) => Key::Ref(Box::new(path_of(p)?)),
        other => Key::Text(other.to_text()),
    })
}

fn path_of(p: &ObjectPath) -> Option<HeaderPath> {
    let keys = p
        .keys
        .iter()
        .map(|(n, v)| Some((n.as_str().to_string(), key_of(v)?)))
        .collect::<Option<Vec<_>>>()?;
    Some(HeaderPath {
        namespace: p.namespace.clone().unwrap_or_default(),
        target: Some((p.class.as_str().to_string(), keys)),
    })
}

fn same_key(a: &Key, b: &Key) -> bool {
    match (a, b) {
        (Key::Text(x), Key::Text(y)) => {
            x == y
                || (x.eq_ignore_ascii_case(y)
                    && matches!(x.to_ascii_uppercase().as_str(), "TRUE" | "FALSE"))
        }
        (Key::Ref(x), Key::Ref(y)) => same(x, y),
        _ => false,
    }
}

/// Two paths name the same thing (namespaces and names without case, keys
/// as a set). A reference inside a header may leave its namespace out.
fn same(a: &HeaderPath, b: &HeaderPath) -> bool {
    let ns_ok = a.namespace.is_empty()
        || b.namespace.is_empty()
        || norm_ns(&a.namespace) == norm_ns(&b.namespace);
    ns_ok
        && match (&a.target, &b.target) {
            (None, None) => true,
            (Some((ca, ka)), Some((cb, kb))) => {
                ca.eq_ignore_ascii_case(cb)
                    && ka.len() == kb.len()
                    && ka.iter().all(|(n, v)| {
                        kb.iter()
                            .any(|(m, w)| n.eq_ignore_ascii_case(m) && same_key(v, w))
                    })
            }
            _ => false,
        }
}

/// Whether a `CIMObject` value names the call's target. The value is
/// percent-decoded first; one that does not decode is compared as sent.
pub fn object_matches(header: &str, call: &Call) -> Result<(), String> {
    let want = match call {
        Call::Intrinsic { namespace, .. } => HeaderPath {
            namespace: namespace.clone(),
            target: None,
        },
        Call::Extrinsic { target, .. } => path_of(target).ok_or("an unsupported key")?,
    };
    let decoded = percent_decode(header);
    let mut tried = Vec::new();
    for text in decoded.iter().map(String::as_str).chain([header]) {
        match parse(text) {
            Ok(p) if same(&p, &want) && norm_ns(&p.namespace) == norm_ns(&want.namespace) => {
                return Ok(())
            }
            Ok(_) => tried.push(format!(
                "CIMObject {text:?} does not name the target of the request"
            )),
            Err(e) => tried.push(format!("CIMObject cannot be read: {e}")),
        }
    }
    if decoded.is_none() {
        return Err(format!("CIMObject {header:?} has a malformed % escape"));
    }
    Err(tried.remove(0))
}

/// The `CIMObject` value for a call on `target` in `ns` (a class path, an
/// instance path, or `None` for an intrinsic call): the form pywbem
/// writes, with `%`, controls and non-ASCII percent-encoded so it is a
/// valid header value.
pub fn cim_object(ns: &str, target: Option<&ObjectPath>) -> String {
    fn path(out: &mut String, ns: &str, p: &ObjectPath) {
        out.push_str(ns);
        out.push(':');
        out.push_str(p.class.as_str());
        for (i, (n, v)) in p.keys.iter().enumerate() {
            out.push(if i == 0 { '.' } else { ',' });
            out.push_str(n.as_str());
            out.push('=');
            match v {
                Value::String(_) | Value::Char16(_) | Value::Datetime(_) | Value::Reference(_) => {
                    let text = match v {
                        Value::Reference(r) => {
                            let mut inner = String::from("/");
                            path(&mut inner, r.namespace.as_deref().unwrap_or(ns), r);
                            inner
                        }
                        other => other.to_text(),
                    };
                    out.push('"');
                    for c in text.chars() {
                        if matches!(c, '"' | '\\') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
                other => out.push_str(&other.to_text()),
            }
        }
    }
    let mut raw = String::new();
    match target {
        Some(p) => path(&mut raw, ns, p),
        None => raw.push_str(ns),
    }
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b == b'%' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cim::model::Name;

    fn instance_call() -> Call {
        let vol = ObjectPath {
            host: Some("127.0.0.1:5988".into()),
            namespace: Some("root/cimv2".into()),
            class: Name::new("RCM_StorageVolume"),
            keys: vec![
                (Name::new("DeviceID"), Value::String("vol \"q\" 1".into())),
                (Name::new("SystemName"), Value::String("site-b".into())),
            ],
        };
        Call::Extrinsic {
            namespace: "root/cimv2".into(),
            target: ObjectPath {
                host: None,
                namespace: Some("root/cimv2".into()),
                class: Name::new("RCM_Sync"),
                keys: vec![
                    (Name::new("SyncedElement"), Value::reference(vol)),
                    (Name::new("N"), Value::Uint32(3)),
                    (Name::new("B"), Value::Boolean(true)),
                ],
            },
            method: "M".into(),
            params: vec![],
        }
    }

    #[test]
    fn every_client_spelling_matches() {
        let c = instance_call();
        // pywbem: unencoded, keys sorted, references without host.
        let pyw = r#"root/cimv2:RCM_Sync.B=TRUE,N=3,SyncedElement="/root/cimv2:RCM_StorageVolume.DeviceID=\"vol \\\"q\\\" 1\",SystemName=\"site-b\"""#;
        object_matches(pyw, &c).unwrap();
        // wbemcli: / and : encoded.
        let wbc = r#"root%2Fcimv2%3ARCM_Sync.N=3,b=true,SyncedElement="//127.0.0.1:5988/root/cimv2:RCM_StorageVolume.SystemName=\"site-b\",DeviceID=\"vol \\\"q\\\" 1\"""#;
        object_matches(wbc, &c).unwrap();
        let ns = Call::Intrinsic {
            namespace: "root/cimv2".into(),
            method: "GetClass".into(),
            params: vec![],
        };
        object_matches("root/cimv2", &ns).unwrap();
        object_matches("root%2Fcimv2", &ns).unwrap();
    }

    #[test]
    fn what_the_client_writes_is_what_the_server_reads() {
        let c = instance_call();
        let Call::Extrinsic { target, .. } = &c else {
            unreachable!()
        };
        let mut t = target.clone();
        t.keys
            .push((Name::new("Pct"), Value::String("50% é".into())));
        let call = Call::Extrinsic {
            namespace: "root/cimv2".into(),
            target: t.clone(),
            method: "M".into(),
            params: vec![],
        };
        object_matches(&cim_object("root/cimv2", Some(&t)), &call).unwrap();
    }

    #[test]
    fn mismatches_and_bad_encodings_are_refused() {
        let c = instance_call();
        for bad in [
            "root/cimv2:RCM_Sync.B=TRUE,N=4,SyncedElement=\"/root/cimv2:RCM_StorageVolume.DeviceID=\\\"x\\\",SystemName=\\\"site-b\\\"\"",
            "root/cimv2/other:RCM_Sync.B=TRUE",
            "root/Bad/Unparsable.Value.What,\"crazy\".object?",
            "root%GFcimv2",
            "root%2Gcimv2",
            "root%2Fcimv2%4",
        ] {
            assert!(object_matches(bad, &c).is_err(), "{bad}");
        }
        let ns = Call::Intrinsic {
            namespace: "test/cimv2".into(),
            method: "AssociatorNames".into(),
            params: vec![],
        };
        assert!(object_matches("test/cimv2/BadValue", &ns).is_err());
    }
}
