//! The MOF compiler: [`parse`] (lexer and parser) and [`compile`], which
//! resolves declarations into a [`Repository`]: superclasses must exist,
//! qualifiers must be declared, values must fit their types. A bad file is
//! an error with file:line:column, never a panic.

pub mod parse;

use std::collections::BTreeMap;

use parse::{apply_flavors, ClassSpec, FeatureSpec, Lit, Production, QualSpec};
pub use parse::{Loc, MofError};

use super::model::{
    CimType, Class, Instance, Method, Name, ObjectPath, Parameter, Property, Qualifier,
    QualifierDecl, Value,
};
use super::repo::{Namespace, Repository};

/// One MOF source to compile.
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

/// Compiles `sources` in order into `repo`, starting in namespace `ns`
/// (`#pragma namespace("...")` switches it).
pub fn compile(repo: &mut Repository, ns: &str, sources: &[Source<'_>]) -> Result<(), MofError> {
    let mut current = ns.to_string();
    let mut aliases: BTreeMap<String, ObjectPath> = BTreeMap::new();
    for s in sources {
        for p in parse::parse(s.file, s.text)? {
            match p {
                Production::Pragma { name, value, loc } => match name.to_ascii_lowercase().as_str()
                {
                    "namespace" => current = value,
                    "locale" | "include" | "instancelocale" | "nonlocal" | "source" => {
                        if name.eq_ignore_ascii_case("include") {
                            return Err(MofError { loc, message: "#pragma include is not supported: list the files to compile instead".into() });
                        }
                    }
                    _ => {
                        return Err(MofError {
                            loc,
                            message: format!("unknown pragma `{name}`"),
                        })
                    }
                },
                Production::Qualifier(q) => {
                    let default = match &q.default {
                        Some(l) => l.to_value(&q.ty, q.is_array).map_err(|m| MofError {
                            loc: q.loc.clone(),
                            message: format!("qualifier {} default: {m}", q.name),
                        })?,
                        None => None,
                    };
                    repo.namespace_mut(&current).add_qualifier(QualifierDecl {
                        name: Name::new(&q.name),
                        ty: q.ty,
                        is_array: q.is_array,
                        array_size: q.array_size,
                        default,
                        scopes: q.scopes,
                        flavor: q.flavor,
                    });
                }
                Production::Class(c) => {
                    let nsp = repo.namespace_mut(&current);
                    let class = resolve_class(nsp, &c)?;
                    nsp.add_class(class);
                }
                Production::Instance(i) => {
                    let nsp = repo.namespace_mut(&current);
                    let class = nsp.class(&i.class).cloned().ok_or_else(|| MofError {
                        loc: i.loc.clone(),
                        message: format!("instance of undefined class {}", i.class),
                    })?;
                    let mut inst = Instance::new(class.name.as_str());
                    for p in &class.properties {
                        inst.properties.push(Property {
                            value: p.value.clone(),
                            qualifiers: Vec::new(),
                            ..p.clone()
                        });
                    }
                    for (name, lit, loc) in &i.values {
                        let decl = class.property(name).ok_or_else(|| MofError {
                            loc: loc.clone(),
                            message: format!("class {} has no property {name}", class.name),
                        })?;
                        let value = match (lit, &decl.ty) {
                            (Lit::Alias(a), CimType::Reference(_)) => Some(Value::reference(
                                aliases.get(a).cloned().ok_or_else(|| MofError {
                                    loc: loc.clone(),
                                    message: format!("alias ${a} is not defined"),
                                })?,
                            )),
                            (Lit::Str(s), CimType::Reference(_)) => {
                                Some(Value::reference(parse_path(s).ok_or_else(|| MofError {
                                    loc: loc.clone(),
                                    message: format!("`{s}` is not an object path"),
                                })?))
                            }
                            (l, ty) => l.to_value(ty, decl.is_array).map_err(|m| MofError {
                                loc: loc.clone(),
                                message: format!("{}.{name}: {m}", class.name),
                            })?,
                        };
                        let slot = inst
                            .properties
                            .iter_mut()
                            .find(|p| p.name.is(name))
                            .expect("listed");
                        slot.value = value;
                    }
                    if let Some(a) = &i.alias {
                        aliases.insert(a.clone(), inst.path(&class, &current, None));
                    }
                    nsp.add_instance(inst);
                }
            }
        }
    }
    Ok(())
}

fn qualifier(ns: &Namespace, q: &QualSpec, scope: &str) -> Result<Qualifier, MofError> {
    let decl = ns.qualifier(&q.name).ok_or_else(|| MofError {
        loc: q.loc.clone(),
        message: format!(
            "qualifier {} is not declared (add a `Qualifier {}` declaration before use)",
            q.name, q.name
        ),
    })?;
    if !decl
        .scopes
        .iter()
        .any(|s| s == "any" || s == scope || (scope == "association" && s == "class"))
    {
        return Err(MofError {
            loc: q.loc.clone(),
            message: format!("qualifier {} is not allowed on a {scope}", q.name),
        });
    }
    let value = match &q.value {
        Some(l) => l.to_value(&decl.ty, decl.is_array).map_err(|m| MofError {
            loc: q.loc.clone(),
            message: format!("qualifier {}: {m}", q.name),
        })?,
        None if decl.ty == CimType::Boolean && !decl.is_array => Some(Value::Boolean(true)),
        None => decl.default.clone(),
    };
    Ok(Qualifier {
        name: decl.name.clone(),
        ty: decl.ty.clone(),
        is_array: decl.is_array,
        value,
        flavor: apply_flavors(decl.flavor, &q.flavor),
        propagated: false,
    })
}

fn qualifiers(ns: &Namespace, qs: &[QualSpec], scope: &str) -> Result<Vec<Qualifier>, MofError> {
    qs.iter().map(|q| qualifier(ns, q, scope)).collect()
}

/// Inherited qualifiers that flow down (ToSubclass), then local ones on top.
fn merge(inherited: &[Qualifier], local: Vec<Qualifier>) -> Vec<Qualifier> {
    let mut out: Vec<Qualifier> = inherited
        .iter()
        .filter(|q| q.flavor.tosubclass && !local.iter().any(|l| l.name == q.name))
        .map(|q| Qualifier {
            propagated: true,
            ..q.clone()
        })
        .collect();
    out.extend(local);
    out
}

fn feature_property(ns: &Namespace, f: &FeatureSpec, class: &Name) -> Result<Property, MofError> {
    let scope = if matches!(f.ty, CimType::Reference(_)) {
        "reference"
    } else {
        "property"
    };
    let quals = qualifiers(ns, &f.qualifiers, scope)?;
    if let CimType::Reference(Some(target)) = &f.ty {
        if ns.class(target.as_str()).is_none() {
            return Err(MofError {
                loc: f.loc.clone(),
                message: format!("reference {} names undefined class {target}", f.name),
            });
        }
    }
    let value = match &f.default {
        Some(l) => l.to_value(&f.ty, f.is_array).map_err(|m| MofError {
            loc: f.loc.clone(),
            message: format!("{}.{}: {m}", class, f.name),
        })?,
        None => None,
    };
    let embedded = quals
        .iter()
        .any(|q| q.name.is("EmbeddedInstance") || q.name.is("EmbeddedObject"))
        .then_some("instance");
    Ok(Property {
        name: Name::new(&f.name),
        ty: f.ty.clone(),
        is_array: f.is_array,
        array_size: f.array_size,
        value,
        qualifiers: quals,
        class_origin: Some(class.clone()),
        propagated: false,
        embedded,
    })
}

fn resolve_class(ns: &Namespace, c: &ClassSpec) -> Result<Class, MofError> {
    let name = Name::new(&c.name);
    let parent = match &c.superclass {
        Some(s) => Some(ns.class(s).cloned().ok_or_else(|| MofError {
            loc: c.loc.clone(),
            message: format!(
                "superclass {s} of {} is not defined (define it before its subclasses)",
                c.name
            ),
        })?),
        None => None,
    };
    let is_assoc = c
        .qualifiers
        .iter()
        .any(|q| q.name.eq_ignore_ascii_case("Association"));
    let local = qualifiers(
        ns,
        &c.qualifiers,
        if is_assoc { "association" } else { "class" },
    )?;
    let class_quals = merge(
        parent
            .as_ref()
            .map(|p| p.qualifiers.as_slice())
            .unwrap_or(&[]),
        local,
    );

    let mut properties: Vec<Property> = parent
        .as_ref()
        .map(|p| {
            p.properties
                .iter()
                .map(|x| Property {
                    propagated: true,
                    ..x.clone()
                })
                .collect()
        })
        .unwrap_or_default();
    for f in &c.properties {
        let mut p = feature_property(ns, f, &name)?;
        if let Some(slot) = properties.iter_mut().find(|x| x.name == p.name) {
            p.qualifiers = merge(&slot.qualifiers, p.qualifiers);
            p.class_origin = slot.class_origin.clone();
            *slot = p;
        } else {
            properties.push(p);
        }
    }

    let mut methods: Vec<Method> = parent
        .as_ref()
        .map(|p| {
            p.methods
                .iter()
                .map(|m| Method {
                    propagated: true,
                    ..m.clone()
                })
                .collect()
        })
        .unwrap_or_default();
    for m in &c.methods {
        let params = m
            .params
            .iter()
            .map(|f| {
                Ok(Parameter {
                    name: Name::new(&f.name),
                    ty: f.ty.clone(),
                    is_array: f.is_array,
                    array_size: f.array_size,
                    qualifiers: qualifiers(ns, &f.qualifiers, "parameter")?,
                })
            })
            .collect::<Result<Vec<_>, MofError>>()?;
        let method = Method {
            name: Name::new(&m.name),
            return_type: m.return_type.clone(),
            params,
            qualifiers: qualifiers(ns, &m.qualifiers, "method")?,
            class_origin: Some(name.clone()),
            propagated: false,
        };
        match methods.iter_mut().find(|x| x.name == method.name) {
            Some(slot) => {
                let origin = slot.class_origin.clone();
                let quals = merge(&slot.qualifiers, method.qualifiers.clone());
                *slot = Method {
                    qualifiers: quals,
                    class_origin: origin,
                    ..method
                };
            }
            None => methods.push(method),
        }
    }

    Ok(Class {
        name,
        superclass: parent.map(|p| p.name.clone()),
        qualifiers: class_quals,
        properties,
        methods,
    })
}

/// Parses an untyped WBEM object path: `[//host/][ns:]Class[.k=v,...]`.
pub fn parse_path(s: &str) -> Option<ObjectPath> {
    let mut rest = s.trim();
    let mut host = None;
    if let Some(r) = rest.strip_prefix("//") {
        let (h, r) = r.split_once('/')?;
        host = Some(h.to_string());
        rest = r;
    }
    let (head, keys) = match find_unquoted(rest, '.') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (namespace, class) = match head.rfind(':') {
        Some(i) => (Some(head[..i].to_string()), &head[i + 1..]),
        None => (None, head),
    };
    if class.is_empty() {
        return None;
    }
    let mut path = ObjectPath {
        host,
        namespace,
        class: Name::new(class),
        keys: Vec::new(),
    };
    if let Some(mut k) = keys {
        while !k.is_empty() {
            let (name, after) = k.split_once('=')?;
            let (value, next) = if let Some(q) = after.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => out.push(c),
                    }
                }
                let end = end?;
                let after_q = &q[end + 1..];
                let v = match parse_path(&out) {
                    Some(p) if out.contains(':') && out.contains('=') => Value::reference(p),
                    _ => Value::String(out),
                };
                (v, after_q.strip_prefix(',').unwrap_or(after_q))
            } else {
                let (tok, next) = match after.split_once(',') {
                    Some((t, n)) => (t, n),
                    None => (after, ""),
                };
                let v = if tok.eq_ignore_ascii_case("true") || tok.eq_ignore_ascii_case("false") {
                    Value::Boolean(tok.eq_ignore_ascii_case("true"))
                } else if let Ok(n) = tok.parse::<u64>() {
                    Value::Uint64(n)
                } else if let Ok(n) = tok.parse::<i64>() {
                    Value::Sint64(n)
                } else {
                    Value::String(tok.to_string())
                };
                (v, next)
            };
            path.keys.push((Name::new(name.trim()), value));
            k = next;
        }
    }
    Some(path)
}

fn find_unquoted(s: &str, c: char) -> Option<usize> {
    let mut quoted = false;
    let mut prev = ' ';
    for (i, ch) in s.char_indices() {
        if ch == '"' && prev != '\\' {
            quoted = !quoted;
        } else if ch == c && !quoted {
            return Some(i);
        }
        prev = ch;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUALS: &str = r#"
Qualifier Key : boolean = false, Scope(property, reference), Flavor(DisableOverride, ToSubclass);
Qualifier Description : string = null, Scope(any), Flavor(EnableOverride, ToSubclass, Translatable);
Qualifier Association : boolean = false, Scope(association), Flavor(DisableOverride, ToSubclass);
Qualifier ValueMap : string[], Scope(property, method, parameter);
Qualifier In : boolean = true, Scope(parameter), Flavor(DisableOverride, ToSubclass);
Qualifier Out : boolean = false, Scope(parameter), Flavor(DisableOverride, ToSubclass);
Qualifier Abstract : boolean = false, Scope(class, association), Flavor(Restricted);
"#;

    fn compile_str(src: &str) -> Result<Repository, MofError> {
        let mut repo = Repository::new();
        compile(
            &mut repo,
            "root/test",
            &[
                Source {
                    file: "q.mof",
                    text: QUALS,
                },
                Source {
                    file: "t.mof",
                    text: src,
                },
            ],
        )?;
        Ok(repo)
    }

    #[test]
    fn classes_inherit_and_override() {
        let repo = compile_str(
            r#"
[Abstract, Description("base")]
class T_Base { [Key] string Id; uint16 State = 2; [ValueMap{"0","2"}] uint16 Mode; };
class T_Sub : T_Base { [Description("more")] uint16 State = 5; string Extra; uint32 Go([In] boolean Force, [Out] T_Base REF Job); };
instance of T_Sub as $x { Id = "a\x41"; Extra = "e" "f"; };
"#,
        )
        .unwrap();
        let ns = repo.namespace("root/test").unwrap();
        let sub = ns.class("t_sub").unwrap();
        assert_eq!(sub.superclass.as_ref().unwrap().as_str(), "T_Base");
        let state = sub.property("STATE").unwrap();
        assert_eq!(state.value, Some(Value::Uint16(5)));
        assert_eq!(state.class_origin.as_ref().unwrap().as_str(), "T_Base");
        assert!(sub.property("Id").unwrap().is_key());
        assert!(sub.property("Id").unwrap().propagated);
        // Abstract is Restricted: it does not flow to subclasses.
        assert!(sub.qualifiers.iter().all(|q| !q.name.is("Abstract")));
        assert!(sub
            .qualifiers
            .iter()
            .any(|q| q.name.is("Description") && q.propagated));
        let m = sub.method("go").unwrap();
        assert!(m.params[1].is_out() && !m.params[0].is_out());
        let inst = &ns.instances()[0];
        assert_eq!(inst.get("Id"), Some(&Value::String("aA".into())));
        assert_eq!(inst.get("Extra"), Some(&Value::String("ef".into())));
        assert_eq!(inst.get("State"), Some(&Value::Uint16(5)));
        assert_eq!(ns.subtree("T_Base").len(), 2);
        assert!(ns.is_a("T_Sub", "t_base"));
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let e = compile_str("class A {\n  strin X;\n};").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.mof:2:3: `strin` is not a CIM data type (a reference needs `strin REF`)"
        );
        let e = compile_str("class B : Nope { };").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.mof:1:1: superclass Nope of B is not defined"),
            "{e}"
        );
        let e = compile_str("[Frob] class C { };").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.mof:1:2: qualifier Frob is not declared"),
            "{e}"
        );
        let e = compile_str("class D { uint8 X = 300; };").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = compile_str("class E { string X = \"open; };").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.mof:1:22: string is not closed"),
            "{e}"
        );
        let e = compile_str("instance of E { X = 1; };").unwrap_err();
        assert!(e.to_string().contains("undefined class E"), "{e}");
    }

    #[test]
    fn object_paths_parse() {
        let p = parse_path(r#"//h/root/cimv2:CIM_Foo.Name="a,b",Id=3,F=true"#).unwrap();
        assert_eq!(p.host.as_deref(), Some("h"));
        assert_eq!(p.namespace.as_deref(), Some("root/cimv2"));
        assert_eq!(p.key("name"), Some(&Value::String("a,b".into())));
        assert_eq!(p.key("Id").and_then(Value::as_u64), Some(3));
        assert_eq!(p.key("f"), Some(&Value::Boolean(true)));
    }
}
