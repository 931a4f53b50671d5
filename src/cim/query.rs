//! A WQL subset for ExecQuery:
//!
//! ```text
//! SELECT * | prop [, prop ...] FROM class [WHERE cond]
//! cond := term (OR term)* ; term := factor (AND factor)*
//! factor := NOT factor | ( cond ) | prop op literal | prop IS [NOT] NULL
//! op := = | <> | != | < | <= | > | >=
//! literal := 'text' | "text" | number | TRUE | FALSE | NULL
//! ```

use super::error::CimError;
use super::model::{Instance, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Cmp { prop: String, op: String, lit: Lit },
    IsNull { prop: String, negated: bool },
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// None for `*`.
    pub select: Option<Vec<String>>,
    pub class: String,
    pub cond: Option<Cond>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Sym(String),
}

fn lex(q: &str) -> Result<Vec<Tok>, CimError> {
    let c: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Word(c[s..i].iter().collect()));
        } else if ch.is_ascii_digit()
            || (ch == '-' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let s = i;
            i += 1;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            let t: String = c[s..i].iter().collect();
            out.push(Tok::Num(t.parse().map_err(|_| {
                CimError::invalid_query(format!("`{t}` is not a number"))
            })?));
        } else if ch == '\'' || ch == '"' {
            i += 1;
            let s = i;
            while i < c.len() && c[i] != ch {
                i += 1;
            }
            if i >= c.len() {
                return Err(CimError::invalid_query("a string literal is not closed"));
            }
            out.push(Tok::Str(c[s..i].iter().collect()));
            i += 1;
        } else if "<>!=".contains(ch) {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["<>", "!=", "<=", ">="].contains(&two.as_str()) {
                out.push(Tok::Sym(two));
                i += 2;
            } else if ch == '!' {
                return Err(CimError::invalid_query("`!` must be followed by `=`"));
            } else {
                out.push(Tok::Sym(ch.to_string()));
                i += 1;
            }
        } else if "(),*".contains(ch) {
            out.push(Tok::Sym(ch.to_string()));
            i += 1;
        } else {
            return Err(CimError::invalid_query(format!(
                "unexpected character `{ch}`"
            )));
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn kw(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if x == s)
    }
    fn word(&mut self, what: &str) -> Result<String, CimError> {
        match self.t.get(self.i) {
            Some(Tok::Word(w)) => {
                self.i += 1;
                Ok(w.clone())
            }
            other => Err(CimError::invalid_query(format!(
                "expected {what}, found {other:?}"
            ))),
        }
    }
    fn expect_kw(&mut self, k: &str) -> Result<(), CimError> {
        if self.kw(k) {
            self.i += 1;
            Ok(())
        } else {
            Err(CimError::invalid_query(format!("expected {k}")))
        }
    }

    fn cond(&mut self) -> Result<Cond, CimError> {
        let mut l = self.term()?;
        while self.kw("OR") {
            self.i += 1;
            l = Cond::Or(Box::new(l), Box::new(self.term()?));
        }
        Ok(l)
    }

    fn term(&mut self) -> Result<Cond, CimError> {
        let mut l = self.factor()?;
        while self.kw("AND") {
            self.i += 1;
            l = Cond::And(Box::new(l), Box::new(self.factor()?));
        }
        Ok(l)
    }

    fn factor(&mut self) -> Result<Cond, CimError> {
        if self.kw("NOT") {
            self.i += 1;
            return Ok(Cond::Not(Box::new(self.factor()?)));
        }
        if self.sym("(") {
            self.i += 1;
            let c = self.cond()?;
            if !self.sym(")") {
                return Err(CimError::invalid_query("expected `)`"));
            }
            self.i += 1;
            return Ok(c);
        }
        let prop = self.word("a property name")?;
        if self.kw("IS") {
            self.i += 1;
            let negated = self.kw("NOT");
            if negated {
                self.i += 1;
            }
            self.expect_kw("NULL")?;
            return Ok(Cond::IsNull { prop, negated });
        }
        let op = match self.t.get(self.i) {
            Some(Tok::Sym(s)) if ["=", "<>", "!=", "<", "<=", ">", ">="].contains(&s.as_str()) => {
                s.clone()
            }
            other => {
                return Err(CimError::invalid_query(format!(
                    "expected a comparison after {prop}, found {other:?}"
                )))
            }
        };
        self.i += 1;
        let lit = match self.t.get(self.i) {
            Some(Tok::Str(s)) => Lit::Str(s.clone()),
            Some(Tok::Num(n)) => Lit::Num(*n),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("TRUE") => Lit::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("FALSE") => Lit::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => Lit::Null,
            other => {
                return Err(CimError::invalid_query(format!(
                    "expected a literal, found {other:?}"
                )))
            }
        };
        self.i += 1;
        Ok(Cond::Cmp { prop, op, lit })
    }
}

/// Parses a WQL query.
pub fn parse(q: &str) -> Result<Query, CimError> {
    let mut p = P { t: lex(q)?, i: 0 };
    p.expect_kw("SELECT")?;
    let select = if p.sym("*") {
        p.i += 1;
        None
    } else {
        let mut v = vec![p.word("a property name or *")?];
        while p.sym(",") {
            p.i += 1;
            v.push(p.word("a property name")?);
        }
        Some(v)
    };
    p.expect_kw("FROM")?;
    let class = p.word("a class name")?;
    let cond = if p.kw("WHERE") {
        p.i += 1;
        Some(p.cond()?)
    } else {
        None
    };
    if p.i != p.t.len() {
        return Err(CimError::invalid_query(format!(
            "unexpected {:?} at the end of the query",
            p.t[p.i]
        )));
    }
    Ok(Query {
        select,
        class,
        cond,
    })
}

fn cmp_values(v: &Value, lit: &Lit) -> Option<std::cmp::Ordering> {
    match (v, lit) {
        (Value::String(s), Lit::Str(l)) => Some(s.as_str().cmp(l.as_str())),
        (Value::Boolean(b), Lit::Bool(l)) => Some(b.cmp(l)),
        (v, Lit::Num(n)) => v
            .to_text()
            .parse::<f64>()
            .ok()
            .and_then(|x| x.partial_cmp(n)),
        (v, Lit::Str(l)) => Some(v.to_text().as_str().cmp(l.as_str())),
        _ => None,
    }
}

/// True when `inst` satisfies the condition.
pub fn matches(cond: &Cond, inst: &Instance) -> bool {
    use std::cmp::Ordering::*;
    match cond {
        Cond::And(a, b) => matches(a, inst) && matches(b, inst),
        Cond::Or(a, b) => matches(a, inst) || matches(b, inst),
        Cond::Not(a) => !matches(a, inst),
        Cond::IsNull { prop, negated } => inst.get(prop).is_none() != *negated,
        Cond::Cmp { prop, op, lit } => {
            let Some(v) = inst.get(prop) else {
                return false;
            };
            if *lit == Lit::Null {
                return false;
            }
            let Some(o) = cmp_values(v, lit) else {
                return false;
            };
            match op.as_str() {
                "=" => o == Equal,
                "<>" | "!=" => o != Equal,
                "<" => o == Less,
                "<=" => o != Greater,
                ">" => o == Greater,
                ">=" => o != Less,
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cim::model::CimType;

    #[test]
    fn parses_and_evaluates() {
        let q =
            parse("select Name, N from CIM_Foo where (N >= 3 and Name <> 'x') or not Flag = TRUE")
                .unwrap();
        assert_eq!(q.select, Some(vec!["Name".into(), "N".into()]));
        let i = Instance::new("CIM_Foo")
            .with("Name", CimType::String, Some(Value::String("a".into())))
            .with("N", CimType::Uint32, Some(Value::Uint32(5)))
            .with("Flag", CimType::Boolean, Some(Value::Boolean(true)));
        assert!(matches(q.cond.as_ref().unwrap(), &i));
        let q = parse("SELECT * FROM CIM_Foo WHERE N < 3 OR Note IS NOT NULL").unwrap();
        assert!(!matches(q.cond.as_ref().unwrap(), &i));
        for bad in [
            "SELECT FROM X",
            "SELECT * FROM",
            "SELECT * FROM X WHERE",
            "SELECT * FROM X WHERE a = ",
            "DELETE * FROM X",
            "SELECT * FROM X WHERE a = 'open",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, 15, "{bad}");
        }
    }
}
