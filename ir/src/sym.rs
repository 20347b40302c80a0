//! Symbolic sizes: integer polynomials over named symbols (`past+seq`, `2*seq-1`,
//! `batch*seq`). A symbolic [`crate::Dim`] is named by its polynomial's canonical text, so equal
//! sizes have equal names however they were computed, and the polynomial can be read back from
//! the name (the code generator evaluates it at run time from the symbols' values).
//!
//! Symbols stand for sizes, so they are never negative; [`Poly::upper`] relies on that.

use std::collections::BTreeMap;
use std::fmt;

/// A polynomial with integer coefficients: monomial (sorted symbol names, repeated for powers;
/// empty for the constant term) → non-zero coefficient.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Poly {
    terms: BTreeMap<Vec<String>, i64>,
}

impl Poly {
    /// The constant `c`.
    pub fn constant(c: i64) -> Poly {
        let mut p = Poly::default();
        p.add_term(vec![], c);
        p
    }

    /// The symbol `name`.
    pub fn symbol(name: &str) -> Poly {
        let mut p = Poly::default();
        p.add_term(vec![name.to_string()], 1);
        p
    }

    fn add_term(&mut self, mono: Vec<String>, c: i64) {
        if c == 0 {
            return;
        }
        let e = self.terms.entry(mono).or_insert(0);
        *e += c;
        if *e == 0 {
            self.terms.retain(|_, v| *v != 0);
        }
    }

    /// The value when the polynomial has no symbol.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// The name when the polynomial is exactly one symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match self.terms.iter().next() {
            Some((m, 1)) if self.terms.len() == 1 && m.len() == 1 => Some(&m[0]),
            _ => None,
        }
    }

    /// Every symbol it mentions, sorted, once each.
    pub fn symbols(&self) -> Vec<String> {
        let mut s: Vec<String> = self.terms.keys().flatten().cloned().collect();
        s.sort();
        s.dedup();
        s
    }

    /// The terms: (monomial, coefficient), constant term included (with an empty monomial).
    pub fn terms(&self) -> impl Iterator<Item = (&[String], i64)> {
        self.terms.iter().map(|(m, &c)| (m.as_slice(), c))
    }

    /// `self + o`.
    pub fn add(&self, o: &Poly) -> Poly {
        let mut r = self.clone();
        for (m, &c) in &o.terms {
            r.add_term(m.clone(), c);
        }
        r
    }

    /// `self - o`.
    pub fn sub(&self, o: &Poly) -> Poly {
        self.add(&o.scale(-1))
    }

    /// `k · self`.
    pub fn scale(&self, k: i64) -> Poly {
        let mut r = Poly::default();
        for (m, &c) in &self.terms {
            r.add_term(m.clone(), c.saturating_mul(k));
        }
        r
    }

    /// `self · o`.
    pub fn mul(&self, o: &Poly) -> Poly {
        let mut r = Poly::default();
        for (ma, &ca) in &self.terms {
            for (mb, &cb) in &o.terms {
                let mut m: Vec<String> = ma.iter().chain(mb).cloned().collect();
                m.sort();
                r.add_term(m, ca.saturating_mul(cb));
            }
        }
        r
    }

    /// `self / o` when the division is exact for every value of the symbols: `o` a non-zero
    /// constant dividing every coefficient, or a single monomial dividing every term.
    pub fn div_exact(&self, o: &Poly) -> Option<Poly> {
        if let Some(k) = o.as_const() {
            if k == 0 || self.terms.values().any(|c| c % k != 0) {
                return None;
            }
            let mut r = Poly::default();
            for (m, &c) in &self.terms {
                r.add_term(m.clone(), c / k);
            }
            return Some(r);
        }
        if o.terms.len() != 1 {
            return if self == o { Some(Poly::constant(1)) } else { None };
        }
        let (om, &oc) = o.terms.iter().next()?;
        let mut r = Poly::default();
        for (m, &c) in &self.terms {
            let mut rest = m.clone();
            for s in om {
                let i = rest.iter().position(|x| x == s)?;
                rest.remove(i);
            }
            if c % oc != 0 {
                return None;
            }
            r.add_term(rest, c / oc);
        }
        Some(r)
    }

    /// The polynomial with the symbols of `subst` replaced by their polynomials.
    pub fn substitute(&self, subst: &BTreeMap<String, Poly>) -> Poly {
        let mut r = Poly::default();
        for (m, &c) in &self.terms {
            let mut t = Poly::constant(c);
            for s in m {
                t = t.mul(&subst.get(s).cloned().unwrap_or_else(|| Poly::symbol(s)));
            }
            r = r.add(&t);
        }
        r
    }

    /// The value for the given symbol values; `None` when a symbol is missing or on overflow.
    pub fn eval(&self, values: &BTreeMap<String, i64>) -> Option<i64> {
        let mut acc: i64 = 0;
        for (m, &c) in &self.terms {
            let mut t = c;
            for s in m {
                t = t.checked_mul(*values.get(s)?)?;
            }
            acc = acc.checked_add(t)?;
        }
        Some(acc)
    }

    /// An upper bound for symbols in `[0, bound]`: the sum of the positive terms at the bounds.
    /// `None` when a symbol of a positive term has no bound, or on overflow.
    pub fn upper(&self, bounds: &BTreeMap<String, usize>) -> Option<usize> {
        let mut acc: i64 = 0;
        for (m, &c) in &self.terms {
            if c < 0 && !m.is_empty() {
                continue;
            }
            let mut t = c;
            for s in m {
                t = t.checked_mul(i64::try_from(*bounds.get(s)?).ok()?)?;
            }
            acc = acc.checked_add(t)?;
        }
        usize::try_from(acc).ok()
    }

    /// True when every coefficient (the constant's included) is positive, so the value is never
    /// negative.
    pub fn is_nonneg(&self) -> bool {
        self.terms.values().all(|&c| c > 0)
    }

    /// Parses the text form (`past+seq`, `2*seq-1`, `s0 + s1`, `(a+1)*b`). Symbol names are
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    pub fn parse(s: &str) -> Option<Poly> {
        let toks = lex(s)?;
        let mut p = Parser { toks, i: 0 };
        let e = p.expr()?;
        (p.i == p.toks.len()).then_some(e)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(i64),
    Id(String),
    Op(char),
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(cs[st..i].iter().collect::<String>().parse().ok()?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let st = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(Tok::Id(cs[st..i].iter().collect()));
        } else if "+-*()".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek_op(&self, c: char) -> bool {
        self.toks.get(self.i) == Some(&Tok::Op(c))
    }

    fn expr(&mut self) -> Option<Poly> {
        let mut acc = if self.peek_op('-') {
            self.i += 1;
            self.term()?.scale(-1)
        } else {
            self.term()?
        };
        loop {
            if self.peek_op('+') {
                self.i += 1;
                acc = acc.add(&self.term()?);
            } else if self.peek_op('-') {
                self.i += 1;
                acc = acc.sub(&self.term()?);
            } else {
                return Some(acc);
            }
        }
    }

    fn term(&mut self) -> Option<Poly> {
        let mut acc = self.factor()?;
        while self.peek_op('*') {
            self.i += 1;
            acc = acc.mul(&self.factor()?);
        }
        Some(acc)
    }

    fn factor(&mut self) -> Option<Poly> {
        let t = self.toks.get(self.i)?.clone();
        self.i += 1;
        match t {
            Tok::Num(n) => Some(Poly::constant(n)),
            Tok::Id(s) => Some(Poly::symbol(&s)),
            Tok::Op('(') => {
                let e = self.expr()?;
                if !self.peek_op(')') {
                    return None;
                }
                self.i += 1;
                Some(e)
            }
            Tok::Op(_) => None,
        }
    }
}

impl fmt::Display for Poly {
    /// Canonical text: symbol terms in monomial order, then the constant; no spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut first = true;
        let konst = self.terms.get(&Vec::new()).copied();
        for (m, &c) in self.terms.iter().filter(|(m, _)| !m.is_empty()) {
            let mag = c.unsigned_abs();
            if c < 0 {
                f.write_str("-")?;
            } else if !first {
                f.write_str("+")?;
            }
            if mag != 1 {
                write!(f, "{mag}*")?;
            }
            f.write_str(&m.join("*"))?;
            first = false;
        }
        if let Some(c) = konst {
            if c >= 0 && !first {
                f.write_str("+")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Poly {
        Poly::parse(s).unwrap()
    }

    #[test]
    fn parse_print_round_trip_canonically() {
        assert_eq!(p("seq + past").to_string(), "past+seq");
        assert_eq!(p("2*seq - 1").to_string(), "2*seq-1");
        assert_eq!(p("(a+1)*b").to_string(), "a*b+b");
        assert_eq!(p("s0 + s1 - s0").to_string(), "s1");
        assert_eq!(p("3 - 5").to_string(), "-2");
        assert_eq!(p("-x+4").to_string(), "-x+4");
        for s in ["past+seq", "2*seq-1", "a*b+b", "batch*seq", "-x+4", "7"] {
            assert_eq!(p(s).to_string(), s);
        }
        assert!(Poly::parse("a/b").is_none());
        assert!(Poly::parse("a+").is_none());
        assert!(Poly::parse("floor(a)").is_none());
    }

    #[test]
    fn arithmetic_and_exact_division() {
        assert_eq!(p("batch*seq*768").div_exact(&p("768")), Some(p("batch*seq")));
        assert_eq!(p("batch*seq*768").div_exact(&p("batch*12")), Some(p("64*seq")));
        assert_eq!(p("seq+1").div_exact(&p("2")), None);
        assert_eq!(p("seq+1").div_exact(&p("seq")), None);
        assert_eq!(p("seq+1").div_exact(&p("seq+1")), Some(p("1")));
        assert_eq!(p("a").mul(&p("a+1")).to_string(), "a+a*a");
    }

    #[test]
    fn evaluation_and_bounds() {
        let b: BTreeMap<String, usize> = [("past".to_string(), 511), ("seq".to_string(), 64)].into();
        assert_eq!(p("past+seq").upper(&b), Some(575));
        assert_eq!(p("seq-1").upper(&b), Some(63));
        assert_eq!(p("past*seq+2").upper(&b), Some(511 * 64 + 2));
        assert_eq!(p("x+1").upper(&b), None);
        let v: BTreeMap<String, i64> = [("past".to_string(), 5), ("seq".to_string(), 1)].into();
        assert_eq!(p("past+seq").eval(&v), Some(6));
        assert_eq!(p("2*seq-past").eval(&v), Some(-3));
    }
}
