//! MOF lexer and parser (DSP0004 Annex A, the subset CIM schemas use).
//!
//! Produces unresolved declarations; `resolve` turns them into classes in a
//! repository. Every error carries file:line:column.

use std::fmt;

use crate::cim::model::{CimType, Flavor, Name, Value};

/// A position in a MOF source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A MOF diagnostic: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{loc}: {message}")]
pub struct MofError {
    pub loc: Loc,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Char(char),
    Int(i128),
    Real(f64),
    Punct(char),
    Pragma,
    Eof,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    col: u32,
    file: &'a str,
}

impl<'a> Lexer<'a> {
    fn loc(&self) -> Loc {
        Loc {
            file: self.file.to_string(),
            line: self.line,
            col: self.col,
        }
    }

    fn err<T>(&self, loc: Loc, message: impl Into<String>) -> Result<T, MofError> {
        let _ = self;
        Err(MofError {
            loc,
            message: message.into(),
        })
    }

    fn bump(&mut self) -> Option<u8> {
        let c = *self.src.get(self.pos)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn peek(&self, k: usize) -> Option<u8> {
        self.src.get(self.pos + k).copied()
    }

    fn skip_space(&mut self) -> Result<(), MofError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_ascii_whitespace() => {
                    self.bump();
                }
                (Some(b'/'), Some(b'/')) => {
                    while !matches!(self.peek(0), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.loc();
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (Some(b'*'), Some(b'/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => {
                                return self.err(start, "comment is not closed (missing */)")
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn escape(&mut self, start: &Loc) -> Result<char, MofError> {
        let c = self.bump().ok_or_else(|| MofError {
            loc: start.clone(),
            message: "unfinished escape".into(),
        })?;
        Ok(match c {
            b'n' => '\n',
            b't' => '\t',
            b'r' => '\r',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'"' => '"',
            b'\'' => '\'',
            b'\\' => '\\',
            b'x' | b'X' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 4 && self.peek(0).is_some_and(|c| c.is_ascii_hexdigit()) {
                    v = v * 16 + (self.bump().unwrap() as char).to_digit(16).unwrap();
                    n += 1;
                }
                if n == 0 {
                    return self.err(self.loc(), "\\x needs hex digits");
                }
                char::from_u32(v).ok_or_else(|| MofError {
                    loc: self.loc(),
                    message: "bad \\x escape".into(),
                })?
            }
            other => return self.err(self.loc(), format!("unknown escape \\{}", other as char)),
        })
    }

    fn next(&mut self) -> Result<(Tok, Loc), MofError> {
        self.skip_space()?;
        let loc = self.loc();
        let Some(c) = self.peek(0) else {
            return Ok((Tok::Eof, loc));
        };
        if c == b'#' {
            let rest = &self.src[self.pos..];
            if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"#pragma") {
                for _ in 0..7 {
                    self.bump();
                }
                return Ok((Tok::Pragma, loc));
            }
            return self.err(loc, "`#` must start `#pragma`");
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.pos;
            while self
                .peek(0)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                self.bump();
            }
            let s = std::str::from_utf8(&self.src[start..self.pos]).expect("ascii");
            return Ok((Tok::Ident(s.to_string()), loc));
        }
        if c == b'"' {
            self.bump();
            let mut s = String::new();
            loop {
                match self.peek(0) {
                    None | Some(b'\n') => {
                        return self.err(loc, "string is not closed (missing \")")
                    }
                    Some(b'"') => {
                        self.bump();
                        break;
                    }
                    Some(b'\\') => {
                        self.bump();
                        s.push(self.escape(&loc)?);
                    }
                    Some(_) => {
                        // Copy one UTF-8 character.
                        let start = self.pos;
                        self.bump();
                        while self.peek(0).is_some_and(|b| (b & 0xc0) == 0x80) {
                            self.bump();
                        }
                        s.push_str(std::str::from_utf8(&self.src[start..self.pos]).map_err(
                            |_| MofError {
                                loc: loc.clone(),
                                message: "string is not UTF-8".into(),
                            },
                        )?);
                    }
                }
            }
            return Ok((Tok::Str(s), loc));
        }
        if c == b'\'' {
            self.bump();
            let ch = match self.peek(0) {
                Some(b'\\') => {
                    self.bump();
                    self.escape(&loc)?
                }
                Some(_) => self.bump().unwrap() as char,
                None => return self.err(loc, "char literal is not closed"),
            };
            if self.bump() != Some(b'\'') {
                return self.err(loc, "char literal is not closed (missing ')");
            }
            return Ok((Tok::Char(ch), loc));
        }
        if c.is_ascii_digit()
            || ((c == b'-' || c == b'+' || c == b'.')
                && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = self.pos;
            self.bump();
            while self.peek(0).is_some_and(|c| {
                c.is_ascii_alphanumeric()
                    || c == b'.'
                    || ((c == b'-' || c == b'+') && matches!(self.src[self.pos - 1], b'e' | b'E'))
            }) {
                self.bump();
            }
            let text = std::str::from_utf8(&self.src[start..self.pos]).expect("ascii");
            return Ok((
                parse_number(text).ok_or_else(|| MofError {
                    loc: loc.clone(),
                    message: format!("`{text}` is not a number"),
                })?,
                loc,
            ));
        }
        if b"{}[]();,:=$.".contains(&c) {
            self.bump();
            return Ok((Tok::Punct(c as char), loc));
        }
        self.err(loc, format!("unexpected character `{}`", c as char))
    }
}

fn parse_number(t: &str) -> Option<Tok> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let sign = |v: i128| if neg { -v } else { v };
    if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        return i128::from_str_radix(h, 16).ok().map(|v| Tok::Int(sign(v)));
    }
    if let Some(b) = body.strip_suffix('b').or_else(|| body.strip_suffix('B')) {
        if b.bytes().all(|c| c == b'0' || c == b'1') {
            return i128::from_str_radix(b, 2).ok().map(|v| Tok::Int(sign(v)));
        }
    }
    if body.bytes().all(|c| c.is_ascii_digit()) {
        if body.len() > 1 && body.starts_with('0') {
            return i128::from_str_radix(&body[1..], 8)
                .ok()
                .map(|v| Tok::Int(sign(v)));
        }
        return body.parse::<i128>().ok().map(|v| Tok::Int(sign(v)));
    }
    t.parse::<f64>().ok().map(Tok::Real)
}

/// A literal as written in MOF, before its type is known.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i128),
    Real(f64),
    Str(String),
    Char(char),
    Alias(String),
    Array(Vec<Lit>),
}

impl Lit {
    /// Converts to a value of `ty` (scalar or array), or explains why not.
    pub fn to_value(&self, ty: &CimType, is_array: bool) -> Result<Option<Value>, String> {
        match (self, is_array) {
            (Lit::Null, _) => Ok(None),
            (Lit::Array(items), true) => items
                .iter()
                .map(|l| l.to_value(ty, false))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| Some(Value::Array(v))),
            (Lit::Array(_), false) => Err(format!(
                "an array is given where a single {} is expected",
                ty.xml_name()
            )),
            (l, true) => l
                .to_value(ty, false)
                .map(|v| v.map(|v| Value::Array(vec![Some(v)]))),
            (Lit::Bool(b), false) if *ty == CimType::Boolean => Ok(Some(Value::Boolean(*b))),
            (Lit::Int(i), false) if ty.is_numeric() => {
                Value::parse_scalar(ty, &i.to_string()).map(Some)
            }
            (Lit::Real(r), false) if matches!(ty, CimType::Real32 | CimType::Real64) => {
                Value::parse_scalar(ty, &format!("{r:?}")).map(Some)
            }
            (Lit::Str(s), false) if matches!(ty, CimType::String) => {
                Ok(Some(Value::String(s.clone())))
            }
            (Lit::Str(s), false) if matches!(ty, CimType::Datetime) => {
                Value::parse_scalar(ty, s).map(Some)
            }
            (Lit::Char(c), false) if matches!(ty, CimType::Char16) => Ok(Some(Value::Char16(*c))),
            (Lit::Str(s), false) if matches!(ty, CimType::Char16) && s.chars().count() == 1 => {
                Ok(Some(Value::Char16(s.chars().next().unwrap())))
            }
            (l, false) => Err(format!("{} is not a valid {}", l.describe(), ty.xml_name())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Lit::Null => "NULL".into(),
            Lit::Bool(b) => b.to_string(),
            Lit::Int(i) => i.to_string(),
            Lit::Real(r) => r.to_string(),
            Lit::Str(s) => format!("\"{s}\""),
            Lit::Char(c) => format!("'{c}'"),
            Lit::Alias(a) => format!("${a}"),
            Lit::Array(_) => "an array".into(),
        }
    }
}

/// A qualifier as written.
#[derive(Clone, Debug, PartialEq)]
pub struct QualSpec {
    pub name: String,
    pub value: Option<Lit>,
    pub flavor: Vec<String>,
    pub loc: Loc,
}

/// A property, reference or parameter as written.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSpec {
    pub qualifiers: Vec<QualSpec>,
    pub ty: CimType,
    pub name: String,
    pub is_array: bool,
    pub array_size: Option<u32>,
    pub default: Option<Lit>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MethodSpec {
    pub qualifiers: Vec<QualSpec>,
    pub return_type: CimType,
    pub name: String,
    pub params: Vec<FeatureSpec>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClassSpec {
    pub qualifiers: Vec<QualSpec>,
    pub name: String,
    pub superclass: Option<String>,
    pub properties: Vec<FeatureSpec>,
    pub methods: Vec<MethodSpec>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QualDeclSpec {
    pub name: String,
    pub ty: CimType,
    pub is_array: bool,
    pub array_size: Option<u32>,
    pub default: Option<Lit>,
    pub scopes: Vec<String>,
    pub flavor: Flavor,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    pub class: String,
    pub alias: Option<String>,
    pub values: Vec<(String, Lit, Loc)>,
    pub loc: Loc,
}

/// One top-level MOF production.
#[derive(Clone, Debug, PartialEq)]
pub enum Production {
    Pragma {
        name: String,
        value: String,
        loc: Loc,
    },
    Qualifier(QualDeclSpec),
    Class(ClassSpec),
    Instance(InstanceSpec),
}

/// Applies the DSP0004 flavor keywords to a flavor.
pub fn apply_flavors(mut f: Flavor, words: &[String]) -> Flavor {
    for w in words {
        match w.to_ascii_lowercase().as_str() {
            "enableoverride" => f.overridable = true,
            "disableoverride" => f.overridable = false,
            "tosubclass" => f.tosubclass = true,
            "restricted" => f.tosubclass = false,
            "translatable" => f.translatable = true,
            _ => {}
        }
    }
    f
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    loc: Loc,
}

/// Parses one MOF source.
pub fn parse(file: &str, src: &str) -> Result<Vec<Production>, MofError> {
    let mut lex = Lexer {
        src: src.as_bytes(),
        pos: 0,
        line: 1,
        col: 1,
        file,
    };
    let (tok, loc) = lex.next()?;
    let mut p = Parser { lex, tok, loc };
    let mut out = Vec::new();
    while p.tok != Tok::Eof {
        out.push(p.production()?);
    }
    Ok(out)
}

impl<'a> Parser<'a> {
    fn advance(&mut self) -> Result<Tok, MofError> {
        let (t, l) = self.lex.next()?;
        self.loc = l;
        Ok(std::mem::replace(&mut self.tok, t))
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, MofError> {
        Err(MofError {
            loc: self.loc.clone(),
            message: message.into(),
        })
    }

    fn describe(&self) -> String {
        match &self.tok {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Char(c) => format!("'{c}'"),
            Tok::Int(i) => i.to_string(),
            Tok::Real(r) => r.to_string(),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Pragma => "#pragma".into(),
            Tok::Eof => "the end of the file".into(),
        }
    }

    fn punct(&mut self, c: char) -> Result<(), MofError> {
        if self.tok == Tok::Punct(c) {
            self.advance()?;
            Ok(())
        } else {
            self.fail(format!("expected `{c}`, found {}", self.describe()))
        }
    }

    fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }

    fn ident(&mut self, what: &str) -> Result<String, MofError> {
        match &self.tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.advance()?;
                Ok(s)
            }
            _ => self.fail(format!("expected {what}, found {}", self.describe())),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn production(&mut self) -> Result<Production, MofError> {
        let loc = self.loc.clone();
        if self.tok == Tok::Pragma {
            self.advance()?;
            let name = self.ident("a pragma name")?;
            self.punct('(')?;
            let value = match self.advance()? {
                Tok::Str(s) => s,
                _ => return self.fail("#pragma takes a string"),
            };
            self.punct(')')?;
            return Ok(Production::Pragma { name, value, loc });
        }
        if self.is_kw("qualifier") {
            return self.qualifier_decl().map(Production::Qualifier);
        }
        let quals = if self.is_punct('[') {
            self.qualifier_list()?
        } else {
            Vec::new()
        };
        if self.is_kw("class") {
            return self.class(quals, loc).map(Production::Class);
        }
        if self.is_kw("instance") {
            return self.instance(loc).map(Production::Instance);
        }
        self.fail(format!(
            "expected `class`, `instance of`, `Qualifier` or `#pragma`, found {}",
            self.describe()
        ))
    }

    fn array_suffix(&mut self) -> Result<(bool, Option<u32>), MofError> {
        if !self.is_punct('[') {
            return Ok((false, None));
        }
        self.advance()?;
        let size = match self.tok {
            Tok::Int(n) if n > 0 => {
                self.advance()?;
                Some(n as u32)
            }
            _ => None,
        };
        self.punct(']')?;
        Ok((true, size))
    }

    fn data_type(&mut self) -> Result<CimType, MofError> {
        let loc = self.loc.clone();
        let name = self.ident("a data type")?;
        match CimType::parse(&name) {
            Some(CimType::Reference(_)) | None => Err(MofError {
                loc,
                message: format!("`{name}` is not a CIM data type"),
            }),
            Some(t) => Ok(t),
        }
    }

    fn qualifier_decl(&mut self) -> Result<QualDeclSpec, MofError> {
        let loc = self.loc.clone();
        self.advance()?; // Qualifier
        let name = self.ident("a qualifier name")?;
        self.punct(':')?;
        let ty = self.data_type()?;
        let (is_array, array_size) = self.array_suffix()?;
        let default = if self.is_punct('=') {
            self.advance()?;
            Some(self.literal()?)
        } else {
            None
        };
        self.punct(',')?;
        if !self.is_kw("scope") {
            return self.fail(format!("expected `Scope(...)`, found {}", self.describe()));
        }
        self.advance()?;
        self.punct('(')?;
        let mut scopes = vec![self.ident("a scope")?.to_ascii_lowercase()];
        while self.is_punct(',') {
            self.advance()?;
            scopes.push(self.ident("a scope")?.to_ascii_lowercase());
        }
        self.punct(')')?;
        let mut flavor = Flavor::default();
        if self.is_punct(',') {
            self.advance()?;
            if !self.is_kw("flavor") {
                return self.fail(format!("expected `Flavor(...)`, found {}", self.describe()));
            }
            self.advance()?;
            self.punct('(')?;
            let mut words = vec![self.ident("a flavor")?];
            while self.is_punct(',') {
                self.advance()?;
                words.push(self.ident("a flavor")?);
            }
            self.punct(')')?;
            flavor = apply_flavors(flavor, &words);
        }
        self.punct(';')?;
        Ok(QualDeclSpec {
            name,
            ty,
            is_array,
            array_size,
            default,
            scopes,
            flavor,
            loc,
        })
    }

    fn qualifier_list(&mut self) -> Result<Vec<QualSpec>, MofError> {
        self.punct('[')?;
        let mut out = Vec::new();
        loop {
            let loc = self.loc.clone();
            let name = self.ident("a qualifier name")?;
            let value = if self.is_punct('(') {
                self.advance()?;
                let v = self.literal()?;
                self.punct(')')?;
                Some(v)
            } else if self.is_punct('{') {
                Some(self.literal()?)
            } else {
                None
            };
            let mut flavor = Vec::new();
            if self.is_punct(':') {
                self.advance()?;
                while let Tok::Ident(w) = &self.tok {
                    flavor.push(w.clone());
                    self.advance()?;
                }
            }
            out.push(QualSpec {
                name,
                value,
                flavor,
                loc,
            });
            if self.is_punct(',') {
                self.advance()?;
                continue;
            }
            self.punct(']')?;
            return Ok(out);
        }
    }

    /// Items separated by commas up to `close`, which it consumes; the
    /// list may be empty.
    fn list_until<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<T, MofError>,
    ) -> Result<Vec<T>, MofError> {
        let mut items = Vec::new();
        if !self.is_punct(close) {
            loop {
                items.push(item(self)?);
                if !self.is_punct(',') {
                    break;
                }
                self.advance()?;
            }
        }
        self.punct(close)?;
        Ok(items)
    }

    fn literal(&mut self) -> Result<Lit, MofError> {
        if self.is_punct('{') {
            self.advance()?;
            let items = self.list_until('}', Self::literal)?;
            return Ok(Lit::Array(items));
        }
        if self.is_punct('$') {
            self.advance()?;
            return Ok(Lit::Alias(self.ident("an alias name")?));
        }
        match self.advance()? {
            Tok::Int(i) => Ok(Lit::Int(i)),
            Tok::Real(r) => Ok(Lit::Real(r)),
            Tok::Char(c) => Ok(Lit::Char(c)),
            Tok::Str(mut s) => {
                // Adjacent strings concatenate.
                while let Tok::Str(more) = &self.tok {
                    s.push_str(more);
                    self.advance()?;
                }
                Ok(Lit::Str(s))
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Tok::Ident(w) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => Ok(Lit::Null),
            other => Err(MofError {
                loc: self.loc.clone(),
                message: format!("expected a value, found {other:?}"),
            }),
        }
    }

    fn class(&mut self, qualifiers: Vec<QualSpec>, loc: Loc) -> Result<ClassSpec, MofError> {
        self.advance()?; // class
        let name = self.ident("a class name")?;
        let superclass = if self.is_punct(':') {
            self.advance()?;
            Some(self.ident("a superclass name")?)
        } else {
            None
        };
        self.punct('{')?;
        let mut properties = Vec::new();
        let mut methods = Vec::new();
        while !self.is_punct('}') {
            let floc = self.loc.clone();
            let quals = if self.is_punct('[') {
                self.qualifier_list()?
            } else {
                Vec::new()
            };
            let tloc = self.loc.clone();
            let tname = self.ident("a data type or class name")?;
            let ty = if self.is_kw("ref") {
                self.advance()?;
                CimType::Reference(Some(Name::new(&tname)))
            } else {
                match CimType::parse(&tname) {
                    Some(CimType::Reference(_)) | None => {
                        return Err(MofError {
                            loc: tloc,
                            message: format!(
                            "`{tname}` is not a CIM data type (a reference needs `{tname} REF`)"
                        ),
                        })
                    }
                    Some(t) => t,
                }
            };
            let fname = self.ident("a property or method name")?;
            if self.is_punct('(') {
                self.advance()?;
                let params = self.list_until(')', Self::parameter)?;
                self.punct(';')?;
                methods.push(MethodSpec {
                    qualifiers: quals,
                    return_type: ty,
                    name: fname,
                    params,
                    loc: floc,
                });
                continue;
            }
            let (is_array, array_size) = self.array_suffix()?;
            let default = if self.is_punct('=') {
                self.advance()?;
                Some(self.literal()?)
            } else {
                None
            };
            self.punct(';')?;
            properties.push(FeatureSpec {
                qualifiers: quals,
                ty,
                name: fname,
                is_array,
                array_size,
                default,
                loc: floc,
            });
        }
        self.punct('}')?;
        self.punct(';')?;
        Ok(ClassSpec {
            qualifiers,
            name,
            superclass,
            properties,
            methods,
            loc,
        })
    }

    fn parameter(&mut self) -> Result<FeatureSpec, MofError> {
        let loc = self.loc.clone();
        let quals = if self.is_punct('[') {
            self.qualifier_list()?
        } else {
            Vec::new()
        };
        let tname = self.ident("a parameter type")?;
        let ty = if self.is_kw("ref") {
            self.advance()?;
            CimType::Reference(Some(Name::new(&tname)))
        } else {
            match CimType::parse(&tname) {
                Some(CimType::Reference(_)) | None => {
                    return self.fail(format!("`{tname}` is not a CIM data type"))
                }
                Some(t) => t,
            }
        };
        let name = self.ident("a parameter name")?;
        let (is_array, array_size) = self.array_suffix()?;
        let default = if self.is_punct('=') {
            self.advance()?;
            Some(self.literal()?)
        } else {
            None
        };
        Ok(FeatureSpec {
            qualifiers: quals,
            ty,
            name,
            is_array,
            array_size,
            default,
            loc,
        })
    }

    fn instance(&mut self, loc: Loc) -> Result<InstanceSpec, MofError> {
        self.advance()?; // instance
        if !self.is_kw("of") {
            return self.fail(format!("expected `of`, found {}", self.describe()));
        }
        self.advance()?;
        let class = self.ident("a class name")?;
        let alias = if self.is_kw("as") {
            self.advance()?;
            self.punct('$')?;
            Some(self.ident("an alias name")?)
        } else {
            None
        };
        self.punct('{')?;
        let mut values = Vec::new();
        while !self.is_punct('}') {
            if self.is_punct('[') {
                self.qualifier_list()?;
            }
            let vloc = self.loc.clone();
            let name = self.ident("a property name")?;
            self.punct('=')?;
            let v = self.literal()?;
            self.punct(';')?;
            values.push((name, v, vloc));
        }
        self.punct('}')?;
        self.punct(';')?;
        Ok(InstanceSpec {
            class,
            alias,
            values,
            loc,
        })
    }
}
