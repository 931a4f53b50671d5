//! The CIM object model (DSP0004): names, types, values, qualifiers,
//! classes, instances and object paths.
//!
//! Names compare case-insensitively and keep the case they were written
//! with ([`Name`]). Values carry their own type; a property's declared type
//! lives beside its value so an instance can be encoded without its class.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A CIM name: compared case-insensitively, displayed as written.
#[derive(Clone, Debug)]
pub struct Name(Arc<str>);

impl Name {
    pub fn new(s: &str) -> Name {
        Name(Arc::from(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl PartialEq for Name {
    fn eq(&self, o: &Name) -> bool {
        self.0.eq_ignore_ascii_case(&o.0)
    }
}
impl Eq for Name {}
impl Hash for Name {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for b in self.0.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
    }
}
impl PartialOrd for Name {
    fn partial_cmp(&self, o: &Name) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Name {
    fn cmp(&self, o: &Name) -> Ordering {
        self.0
            .bytes()
            .map(|b| b.to_ascii_lowercase())
            .cmp(o.0.bytes().map(|b| b.to_ascii_lowercase()))
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

/// The CIM intrinsic data types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CimType {
    Boolean,
    String,
    Char16,
    Uint8,
    Sint8,
    Uint16,
    Sint16,
    Uint32,
    Sint32,
    Uint64,
    Sint64,
    Real32,
    Real64,
    Datetime,
    /// A reference, with the class it points to if declared.
    Reference(Option<Name>),
}

impl CimType {
    /// The DSP0201 TYPE attribute value (reference has none).
    pub fn xml_name(&self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            CimType::String => "string",
            CimType::Char16 => "char16",
            CimType::Uint8 => "uint8",
            CimType::Sint8 => "sint8",
            CimType::Uint16 => "uint16",
            CimType::Sint16 => "sint16",
            CimType::Uint32 => "uint32",
            CimType::Sint32 => "sint32",
            CimType::Uint64 => "uint64",
            CimType::Sint64 => "sint64",
            CimType::Real32 => "real32",
            CimType::Real64 => "real64",
            CimType::Datetime => "datetime",
            CimType::Reference(_) => "reference",
        }
    }

    pub fn parse(s: &str) -> Option<CimType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "boolean" => CimType::Boolean,
            "string" => CimType::String,
            "char16" => CimType::Char16,
            "uint8" => CimType::Uint8,
            "sint8" => CimType::Sint8,
            "uint16" => CimType::Uint16,
            "sint16" => CimType::Sint16,
            "uint32" => CimType::Uint32,
            "sint32" => CimType::Sint32,
            "uint64" => CimType::Uint64,
            "sint64" => CimType::Sint64,
            "real32" => CimType::Real32,
            "real64" => CimType::Real64,
            "datetime" => CimType::Datetime,
            "reference" => CimType::Reference(None),
            _ => return None,
        })
    }

    pub fn is_numeric(&self) -> bool {
        !matches!(
            self,
            CimType::Boolean
                | CimType::String
                | CimType::Char16
                | CimType::Datetime
                | CimType::Reference(_)
        )
    }

    /// KEYVALUE VALUETYPE for a key of this type.
    pub fn value_type(&self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            t if t.is_numeric() => "numeric",
            _ => "string",
        }
    }
}

/// A CIM datetime (DSP0004 §5.2.4), kept in its 25-character text form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DateTime(String);

impl DateTime {
    /// Validates a timestamp (`yyyymmddhhmmss.mmmmmmsutc`) or an interval
    /// (`ddddddddhhmmss.mmmmmm:000`); `*` may stand for digits.
    pub fn parse(s: &str) -> Option<DateTime> {
        let b = s.as_bytes();
        if b.len() != 25 || b[14] != b'.' {
            return None;
        }
        let digits =
            |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit() || *c == b'*');
        if !digits(0..14) || !digits(15..21) {
            return None;
        }
        match b[21] {
            b'+' | b'-' if digits(22..25) => Some(DateTime(s.to_string())),
            b':' if &b[22..25] == b"000" => Some(DateTime(s.to_string())),
            _ => None,
        }
    }

    pub fn is_interval(&self) -> bool {
        self.0.as_bytes()[21] == b':'
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A timestamp from a zoned date and time.
    pub fn timestamp<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> DateTime {
        use chrono::{Datelike, Offset, Timelike};
        let offset_min = t.offset().fix().local_minus_utc() / 60;
        let sign = if offset_min < 0 { '-' } else { '+' };
        DateTime(format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}.{:06}{sign}{:03}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 1000 % 1_000_000,
            offset_min.unsigned_abs()
        ))
    }

    /// An interval of `ms` milliseconds.
    pub fn interval_ms(ms: u64) -> DateTime {
        let us = (ms % 1000) * 1000;
        let total_s = ms / 1000;
        let (d, rem) = (total_s / 86_400, total_s % 86_400);
        DateTime(format!(
            "{d:08}{:02}{:02}{:02}.{us:06}:000",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        ))
    }
}

/// One CIM value. Arrays hold scalars; NULL is `None` at the property level
/// and inside arrays.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Boolean(bool),
    String(String),
    Char16(char),
    Uint8(u8),
    Sint8(i8),
    Uint16(u16),
    Sint16(i16),
    Uint32(u32),
    Sint32(i32),
    Uint64(u64),
    Sint64(i64),
    Real32(f32),
    Real64(f64),
    Datetime(DateTime),
    /// Boxed: paths are large and rare, values are many.
    Reference(Box<ObjectPath>),
    /// An embedded instance (a string property or parameter with the
    /// EmbeddedInstance/EmbeddedObject qualifier).
    Instance(Box<Instance>),
    Array(Vec<Option<Value>>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A reference value.
    pub fn reference(p: ObjectPath) -> Value {
        Value::Reference(Box::new(p))
    }

    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::Uint8(v) => v as u64,
            Value::Uint16(v) => v as u64,
            Value::Uint32(v) => v as u64,
            Value::Uint64(v) => v,
            Value::Sint8(v) if v >= 0 => v as u64,
            Value::Sint16(v) if v >= 0 => v as u64,
            Value::Sint32(v) if v >= 0 => v as u64,
            Value::Sint64(v) if v >= 0 => v as u64,
            _ => return None,
        })
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_ref_path(&self) -> Option<&ObjectPath> {
        match self {
            Value::Reference(p) => Some(p.as_ref()),
            _ => None,
        }
    }

    /// Parses the text of a VALUE element as a value of `ty`.
    pub fn parse_scalar(ty: &CimType, text: &str) -> Result<Value, String> {
        let t = text.trim();
        let int = |t: &str| -> Result<i128, String> {
            let (neg, body) = match t.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                i128::from_str_radix(h, 16)
            } else {
                body.parse::<i128>()
            }
            .map_err(|_| format!("`{t}` is not a {}", ty.xml_name()))?;
            Ok(if neg { -v } else { v })
        };
        let range = |v: i128, lo: i128, hi: i128| -> Result<i128, String> {
            if v < lo || v > hi {
                Err(format!("{v} is out of range for {}", ty.xml_name()))
            } else {
                Ok(v)
            }
        };
        Ok(match ty {
            CimType::Boolean => match t.to_ascii_lowercase().as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => return Err(format!("`{t}` is not a boolean (TRUE or FALSE)")),
            },
            CimType::String => Value::String(text.to_string()),
            CimType::Char16 => {
                let mut c = text.chars();
                match (c.next(), c.next()) {
                    (Some(ch), None) => Value::Char16(ch),
                    _ => return Err(format!("`{text}` is not one char16 character")),
                }
            }
            CimType::Uint8 => Value::Uint8(range(int(t)?, 0, u8::MAX as i128)? as u8),
            CimType::Sint8 => Value::Sint8(range(int(t)?, i8::MIN as i128, i8::MAX as i128)? as i8),
            CimType::Uint16 => Value::Uint16(range(int(t)?, 0, u16::MAX as i128)? as u16),
            CimType::Sint16 => {
                Value::Sint16(range(int(t)?, i16::MIN as i128, i16::MAX as i128)? as i16)
            }
            CimType::Uint32 => Value::Uint32(range(int(t)?, 0, u32::MAX as i128)? as u32),
            CimType::Sint32 => {
                Value::Sint32(range(int(t)?, i32::MIN as i128, i32::MAX as i128)? as i32)
            }
            CimType::Uint64 => Value::Uint64(range(int(t)?, 0, u64::MAX as i128)? as u64),
            CimType::Sint64 => {
                Value::Sint64(range(int(t)?, i64::MIN as i128, i64::MAX as i128)? as i64)
            }
            CimType::Real32 => Value::Real32(parse_real(t)? as f32),
            CimType::Real64 => Value::Real64(parse_real(t)?),
            CimType::Datetime => Value::Datetime(
                DateTime::parse(t).ok_or_else(|| format!("`{t}` is not a CIM datetime"))?,
            ),
            CimType::Reference(_) => return Err("a reference cannot be given as text".into()),
        })
    }

    /// The text form used inside VALUE and KEYVALUE.
    pub fn to_text(&self) -> String {
        match self {
            Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
            Value::String(s) => s.clone(),
            Value::Char16(c) => c.to_string(),
            Value::Uint8(v) => v.to_string(),
            Value::Sint8(v) => v.to_string(),
            Value::Uint16(v) => v.to_string(),
            Value::Sint16(v) => v.to_string(),
            Value::Uint32(v) => v.to_string(),
            Value::Sint32(v) => v.to_string(),
            Value::Uint64(v) => v.to_string(),
            Value::Sint64(v) => v.to_string(),
            Value::Real32(v) => fmt_real(*v as f64),
            Value::Real64(v) => fmt_real(*v),
            Value::Datetime(d) => d.as_str().to_string(),
            Value::Reference(p) => p.to_string(),
            Value::Instance(i) => format!("instance of {}", i.class),
            Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_ref()
                        .map(|v| v.to_text())
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The type of this value (for arrays, of their first non-null element).
    pub fn cim_type(&self) -> CimType {
        match self {
            Value::Boolean(_) => CimType::Boolean,
            Value::String(_) | Value::Instance(_) => CimType::String,
            Value::Char16(_) => CimType::Char16,
            Value::Uint8(_) => CimType::Uint8,
            Value::Sint8(_) => CimType::Sint8,
            Value::Uint16(_) => CimType::Uint16,
            Value::Sint16(_) => CimType::Sint16,
            Value::Uint32(_) => CimType::Uint32,
            Value::Sint32(_) => CimType::Sint32,
            Value::Uint64(_) => CimType::Uint64,
            Value::Sint64(_) => CimType::Sint64,
            Value::Real32(_) => CimType::Real32,
            Value::Real64(_) => CimType::Real64,
            Value::Datetime(_) => CimType::Datetime,
            Value::Reference(p) => CimType::Reference(Some(p.class.clone())),
            Value::Array(a) => a
                .iter()
                .flatten()
                .next()
                .map(|v| v.cim_type())
                .unwrap_or(CimType::String),
        }
    }

    /// Converts this value to `ty` where the conversion is lossless (a
    /// number written untyped, a uint16 given where a uint32 is declared).
    pub fn coerce(self, ty: &CimType) -> Result<Value, String> {
        if let Value::Array(items) = self {
            return items
                .into_iter()
                .map(|v| v.map(|v| v.coerce(ty)).transpose())
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
        match (&self, ty) {
            (Value::Reference(_), CimType::Reference(_)) => Ok(self),
            (Value::Instance(_), CimType::String) => Ok(self),
            (Value::String(s), t) if !matches!(t, CimType::String) => Value::parse_scalar(t, s),
            (v, t) if v.cim_type() == *t => Ok(self),
            (v, t) if v.cim_type().is_numeric() && t.is_numeric() => {
                Value::parse_scalar(t, &v.to_text())
            }
            (v, t) => Err(format!(
                "a {} value cannot be used as {}",
                v.cim_type().xml_name(),
                t.xml_name()
            )),
        }
    }
}

fn parse_real(t: &str) -> Result<f64, String> {
    match t {
        "INF" => Ok(f64::INFINITY),
        "-INF" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => t
            .parse::<f64>()
            .map_err(|_| format!("`{t}` is not a real number")),
    }
}

fn fmt_real(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "INF" } else { "-INF" }.into()
    } else {
        format!("{v:?}")
    }
}

/// Qualifier flavors (DSP0004 §5.6.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flavor {
    pub overridable: bool,
    pub tosubclass: bool,
    pub translatable: bool,
}

impl Default for Flavor {
    fn default() -> Flavor {
        Flavor {
            overridable: true,
            tosubclass: true,
            translatable: false,
        }
    }
}

/// A qualifier on a class, property, method or parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Qualifier {
    pub name: Name,
    pub ty: CimType,
    pub is_array: bool,
    pub value: Option<Value>,
    pub flavor: Flavor,
    /// Inherited from a superclass rather than set here.
    pub propagated: bool,
}

/// A qualifier declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct QualifierDecl {
    pub name: Name,
    pub ty: CimType,
    pub is_array: bool,
    pub array_size: Option<u32>,
    pub default: Option<Value>,
    /// Lower-case scope names (class, association, property, reference,
    /// method, parameter, indication, qualifier, any).
    pub scopes: Vec<String>,
    pub flavor: Flavor,
}

/// A property of a class (declaration) or of an instance (value).
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    pub name: Name,
    pub ty: CimType,
    pub is_array: bool,
    pub array_size: Option<u32>,
    pub value: Option<Value>,
    pub qualifiers: Vec<Qualifier>,
    /// The class that declared the property first.
    pub class_origin: Option<Name>,
    pub propagated: bool,
    /// "instance" or "object" when the string holds an embedded object.
    pub embedded: Option<&'static str>,
}

impl Property {
    pub fn new(name: &str, ty: CimType, value: Option<Value>) -> Property {
        let is_array = matches!(value, Some(Value::Array(_)));
        let embedded = matches!(value, Some(Value::Instance(_))).then_some("instance");
        Property {
            name: Name::new(name),
            ty,
            is_array,
            array_size: None,
            value,
            qualifiers: Vec::new(),
            class_origin: None,
            propagated: false,
            embedded,
        }
    }

    /// This declaration as an instance carries it: `value`, and no
    /// qualifiers (the declaration's own are not copied, only to be
    /// dropped: that copy was a sixth of a GetInstance's time).
    pub fn declared(&self, value: Option<Value>) -> Property {
        Property {
            name: self.name.clone(),
            ty: self.ty.clone(),
            is_array: self.is_array,
            array_size: self.array_size,
            value,
            qualifiers: Vec::new(),
            class_origin: self.class_origin.clone(),
            propagated: self.propagated,
            embedded: self.embedded,
        }
    }

    pub fn qualifier(&self, name: &str) -> Option<&Qualifier> {
        self.qualifiers.iter().find(|q| q.name.is(name))
    }

    pub fn is_key(&self) -> bool {
        has_true(&self.qualifiers, "Key")
    }
}

/// True when the boolean qualifier `name` is present and true.
pub fn has_true(qs: &[Qualifier], name: &str) -> bool {
    qs.iter()
        .any(|q| q.name.is(name) && q.value.as_ref().and_then(Value::as_bool).unwrap_or(false))
}

/// A method parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: Name,
    pub ty: CimType,
    pub is_array: bool,
    pub array_size: Option<u32>,
    pub qualifiers: Vec<Qualifier>,
}

impl Parameter {
    pub fn is_in(&self) -> bool {
        // IN defaults to true (DSP0004).
        !self
            .qualifiers
            .iter()
            .any(|q| q.name.is("In") && q.value.as_ref().and_then(Value::as_bool) == Some(false))
    }
    pub fn is_out(&self) -> bool {
        has_true(&self.qualifiers, "Out")
    }
    pub fn embedded(&self) -> bool {
        self.qualifiers
            .iter()
            .any(|q| q.name.is("EmbeddedInstance") || q.name.is("EmbeddedObject"))
    }
}

/// A method of a class.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    pub name: Name,
    pub return_type: CimType,
    pub params: Vec<Parameter>,
    pub qualifiers: Vec<Qualifier>,
    pub class_origin: Option<Name>,
    pub propagated: bool,
}

/// A class, with inherited members resolved in.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    pub name: Name,
    pub superclass: Option<Name>,
    pub qualifiers: Vec<Qualifier>,
    pub properties: Vec<Property>,
    pub methods: Vec<Method>,
}

impl Class {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name.is(name))
    }
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.name.is(name))
    }
    pub fn is_association(&self) -> bool {
        has_true(&self.qualifiers, "Association")
    }
    pub fn keys(&self) -> impl Iterator<Item = &Property> {
        self.properties.iter().filter(|p| p.is_key())
    }
}

/// An instance: its class name and property values.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub class: Name,
    pub properties: Vec<Property>,
}

impl Instance {
    pub fn new(class: &str) -> Instance {
        Instance {
            class: Name::new(class),
            properties: Vec::new(),
        }
    }

    /// Adds or replaces a property value.
    pub fn set(&mut self, name: &str, ty: CimType, value: Option<Value>) -> &mut Self {
        let p = Property::new(name, ty, value);
        match self.properties.iter_mut().find(|x| x.name.is(name)) {
            Some(x) => *x = p,
            None => self.properties.push(p),
        }
        self
    }

    pub fn with(mut self, name: &str, ty: CimType, value: Option<Value>) -> Self {
        self.set(name, ty, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties
            .iter()
            .find(|p| p.name.is(name))
            .and_then(|p| p.value.as_ref())
    }

    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name.is(name))
    }

    /// The path of this instance, from the key properties of `class`.
    pub fn path(&self, class: &Class, namespace: &str, host: Option<&str>) -> ObjectPath {
        let keys = class
            .keys()
            .filter_map(|k| {
                self.property(k.name.as_str())
                    .and_then(|p| p.value.clone())
                    .map(|v| (k.name.clone(), v))
            })
            .collect();
        ObjectPath {
            host: host.map(str::to_string),
            namespace: Some(namespace.to_string()),
            class: self.class.clone(),
            keys,
        }
    }
}

/// An object path: optional host and namespace, class, and key bindings.
#[derive(Clone, Debug)]
pub struct ObjectPath {
    pub host: Option<String>,
    pub namespace: Option<String>,
    pub class: Name,
    pub keys: Vec<(Name, Value)>,
}

impl ObjectPath {
    pub fn class_path(namespace: Option<&str>, class: &str) -> ObjectPath {
        ObjectPath {
            host: None,
            namespace: namespace.map(str::to_string),
            class: Name::new(class),
            keys: Vec::new(),
        }
    }

    /// Sets a key binding, replacing one of the same name.
    pub fn set_key(&mut self, name: &str, value: Value) {
        match self.keys.iter_mut().find(|(n, _)| n.is(name)) {
            Some((_, v)) => *v = value,
            None => self.keys.push((Name::new(name), value)),
        }
    }

    pub fn key(&self, name: &str) -> Option<&Value> {
        self.keys.iter().find(|(n, _)| n.is(name)).map(|(_, v)| v)
    }

    /// Identity of the instance: class and keys, ignoring host, key order,
    /// the case of names, and the types numbers were written with.
    pub fn same_instance(&self, o: &ObjectPath) -> bool {
        if self.class != o.class || self.keys.len() != o.keys.len() {
            return false;
        }
        self.keys.iter().all(|(n, v)| match o.key(n.as_str()) {
            Some(w) => key_eq(v, w),
            None => false,
        })
    }
}

fn key_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Reference(x), Value::Reference(y)) => x.same_instance(y),
        (Value::String(x), Value::String(y)) => x == y,
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.to_text().eq_ignore_ascii_case(&b.to_text()),
        },
    }
}

impl PartialEq for ObjectPath {
    fn eq(&self, o: &ObjectPath) -> bool {
        self.same_instance(o)
    }
}

impl fmt::Display for ObjectPath {
    /// WBEM URI-like form: `//host/ns:Class.K1="v",K2=3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "//{h}/")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}:")?;
        }
        write!(f, "{}", self.class)?;
        for (i, (k, v)) in self.keys.iter().enumerate() {
            f.write_str(if i == 0 { "." } else { "," })?;
            match v {
                Value::String(s) => write!(
                    f,
                    "{k}=\"{}\"",
                    s.replace('\\', "\\\\").replace('"', "\\\"")
                )?,
                Value::Reference(p) => write!(
                    f,
                    "{k}=\"{}\"",
                    p.to_string().replace('\\', "\\\\").replace('"', "\\\"")
                )?,
                v => write!(f, "{k}={}", v.to_text())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod size_tests {
    /// Enumerations hold many values at once: keep them small (a reference
    /// is boxed for this reason).
    #[test]
    fn values_and_properties_stay_small() {
        assert!(
            std::mem::size_of::<super::Value>() <= 32,
            "{}",
            std::mem::size_of::<super::Value>()
        );
        assert!(
            std::mem::size_of::<super::Property>() <= 144,
            "{}",
            std::mem::size_of::<super::Property>()
        );
    }
}
