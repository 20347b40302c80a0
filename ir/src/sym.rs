//! Symbolic sizes: integer polynomials over named symbols (`past+seq`, `2*seq-1`,
//! `batch*seq`). A symbolic [`crate::Dim`] is named by its polynomial's canonical text, so equal
//! sizes have equal names however they were computed, and the polynomial can be read back from
//! the name (the code generator evaluates it at run time from the symbols' values).
//!
//! Symbols stand for sizes, so they are never negative; [`Poly::upper`] relies on that.
//!
//! Sizes that are no polynomial of the symbols — the end of a slice `min(seq,3)`, the parts of
//! a split `floordiv(seq+1,2)`, a window count — are *atoms*: a monomial's factor named by its
//! canonical text (`min(A,B)`, `max(A,B)`, `floordiv(A,k)` over canonical polynomials `A`, `B`
//! and a constant `k > 0`). An atom is a size too: its value is clamped at 0. [`Poly::symbols`]
//! lists the plain symbols inside atoms; [`Poly::eval`], [`Poly::upper`] and
//! [`Poly::substitute`] see through them, and the code generator evaluates them at run time.

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

    /// The name when the polynomial is exactly one plain symbol (not an atom).
    pub fn as_symbol(&self) -> Option<&str> {
        match self.terms.iter().next() {
            Some((m, 1)) if self.terms.len() == 1 && m.len() == 1 && Atom::of(&m[0]).is_none() => Some(&m[0]),
            _ => None,
        }
    }

    /// Every plain symbol it mentions (inside atoms too), sorted, once each.
    pub fn symbols(&self) -> Vec<String> {
        let mut s = Vec::new();
        for name in self.terms.keys().flatten() {
            match Atom::of(name) {
                Some(a) => s.extend(a.args().iter().flat_map(|p| p.symbols())),
                None => s.push(name.clone()),
            }
        }
        s.sort();
        s.dedup();
        s
    }

    /// `min(self, o)` as a size (at least 0): a constant or one of the two when their difference
    /// is a constant, else an atom.
    pub fn size_min(&self, o: &Poly) -> Poly {
        Atom::Min(self.clone(), o.clone()).simplified()
    }

    /// `max(self, o)` as a size (at least 0), like [`Poly::size_min`].
    pub fn size_max(&self, o: &Poly) -> Poly {
        Atom::Max(self.clone(), o.clone()).simplified()
    }

    /// `floor(self / k)` as a size (at least 0) for `k > 0`: exact division when it is, a
    /// constant when `self` is, else an atom. `None` for `k <= 0`.
    pub fn floor_div(&self, k: i64) -> Option<Poly> {
        (k > 0).then(|| Atom::FloorDiv(self.clone(), k).simplified())
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

    /// The polynomial with the symbols of `subst` replaced by their polynomials (inside atoms
    /// too).
    pub fn substitute(&self, subst: &BTreeMap<String, Poly>) -> Poly {
        let mut r = Poly::default();
        for (m, &c) in &self.terms {
            let mut t = Poly::constant(c);
            for s in m {
                let f = match (subst.get(s), Atom::of(s)) {
                    (Some(p), _) => p.clone(),
                    (None, Some(a)) => a.map(|p| p.substitute(subst)).simplified(),
                    (None, None) => Poly::symbol(s),
                };
                t = t.mul(&f);
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
                let v = match Atom::of(s) {
                    Some(a) => a.eval(values)?,
                    None => *values.get(s)?,
                };
                t = t.checked_mul(v)?;
            }
            acc = acc.checked_add(t)?;
        }
        Some(acc)
    }

    /// An upper bound for symbols in `[0, bound]`: the sum of the positive terms at the bounds
    /// (an atom's factor at its own upper bound). `None` when a factor of a positive term has
    /// no bound, or on overflow.
    pub fn upper(&self, bounds: &BTreeMap<String, usize>) -> Option<usize> {
        let mut acc: i64 = 0;
        for (m, &c) in &self.terms {
            if c < 0 && !m.is_empty() {
                continue;
            }
            let mut t = c;
            for s in m {
                let b = match Atom::of(s) {
                    Some(a) => a.upper(bounds)?,
                    None => *bounds.get(s)?,
                };
                t = t.checked_mul(i64::try_from(b).ok()?)?;
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

/// A size that is no polynomial of its arguments (see the module docs), at least 0.
#[derive(Clone, Debug, PartialEq)]
pub enum Atom {
    /// The smaller of two sizes.
    Min(Poly, Poly),
    /// The larger of two sizes.
    Max(Poly, Poly),
    /// `floor(a / k)`, `k > 0`.
    FloorDiv(Poly, i64),
}

impl Atom {
    /// The atom a symbol name spells (`min(seq,3)`), if it is one.
    pub fn of(name: &str) -> Option<Atom> {
        if !name.ends_with(')') {
            return None;
        }
        let mut p = Parser { toks: lex(name)?, i: 0 };
        let a = p.call()?;
        (p.i == p.toks.len()).then_some(a)
    }

    /// The polynomial arguments.
    pub fn args(&self) -> Vec<&Poly> {
        match self {
            Atom::Min(a, b) | Atom::Max(a, b) => vec![a, b],
            Atom::FloorDiv(a, _) => vec![a],
        }
    }

    fn map(&self, f: impl Fn(&Poly) -> Poly) -> Atom {
        match self {
            Atom::Min(a, b) => Atom::Min(f(a), f(b)),
            Atom::Max(a, b) => Atom::Max(f(a), f(b)),
            Atom::FloorDiv(a, k) => Atom::FloorDiv(f(a), *k),
        }
    }

    /// The value at `v` (clamped at 0), from the arguments' values `a` (and `b`).
    pub fn apply(&self, a: i64, b: i64) -> i64 {
        match self {
            Atom::Min(..) => a.min(b),
            Atom::Max(..) => a.max(b),
            Atom::FloorDiv(_, k) => a.div_euclid(*k),
        }
        .max(0)
    }

    fn eval(&self, values: &BTreeMap<String, i64>) -> Option<i64> {
        let a = self.args()[0].eval(values)?;
        let b = match self {
            Atom::FloorDiv(..) => 0,
            _ => self.args()[1].eval(values)?,
        };
        Some(self.apply(a, b))
    }

    fn upper(&self, bounds: &BTreeMap<String, usize>) -> Option<usize> {
        let (a, b) = (self.args()[0].upper(bounds), self.args().get(1).and_then(|p| p.upper(bounds)));
        match self {
            Atom::Min(..) => match (a, b) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
            Atom::Max(..) => Some(a?.max(b?)),
            Atom::FloorDiv(_, k) => Some(a? / usize::try_from(*k).ok()?),
        }
    }

    /// The simplest polynomial of this atom: a constant when every argument is, one argument
    /// of min/max when their difference is a constant (and it is a size), an exact quotient;
    /// else the atom itself, its min/max arguments in canonical order.
    fn simplified(self) -> Poly {
        match &self {
            Atom::Min(a, b) | Atom::Max(a, b) => {
                if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
                    return Poly::constant(self.apply(x, y));
                }
                // Against a constant <= 0: min is 0 (the clamp), max the other when it is a size.
                let is_min = matches!(self, Atom::Min(..));
                for (p, q) in [(a, b), (b, a)] {
                    if q.as_const().is_some_and(|c| c <= 0) {
                        if is_min {
                            return Poly::constant(0);
                        }
                        if p.is_nonneg() {
                            return p.clone();
                        }
                    }
                }
                if let Some(d) = a.sub(b).as_const() {
                    let a_smaller = d <= 0;
                    let pick = if a_smaller == matches!(self, Atom::Min(..)) { a } else { b };
                    // A pick that may be negative keeps the atom (its clamp at 0).
                    if pick.is_nonneg() {
                        return pick.clone();
                    }
                }
            }
            Atom::FloorDiv(a, k) => {
                if *k == 1 && a.is_nonneg() {
                    return a.clone();
                }
                if let Some(c) = a.as_const() {
                    return Poly::constant(self.apply(c, 0));
                }
                if let Some(q) = a.div_exact(&Poly::constant(*k)).filter(Poly::is_nonneg) {
                    return q;
                }
                // floor(g·P / g·k) = floor(P / k): reduced by the gcd of k and the coefficients.
                let g = a.terms.values().fold(*k, |g, &c| gcd(g, c.unsigned_abs() as i64));
                if g > 1
                    && let Some(reduced) = a.div_exact(&Poly::constant(g))
                {
                    return Atom::FloorDiv(reduced, k / g).simplified();
                }
            }
        }
        let f = if matches!(self, Atom::Min(..)) { "min" } else { "max" };
        let name = match self {
            Atom::Min(a, b) | Atom::Max(a, b) => {
                let (x, y) = (a.to_string(), b.to_string());
                let (x, y) = if x <= y { (x, y) } else { (y, x) };
                format!("{f}({x},{y})")
            }
            Atom::FloorDiv(a, k) => format!("floordiv({a},{k})"),
        };
        Poly::symbol(&name)
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
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
        } else if "+-*(),".contains(c) {
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

    /// An atom: `min(A,B)`, `max(A,B)` or `floordiv(A,k)`.
    fn call(&mut self) -> Option<Atom> {
        let Some(Tok::Id(f)) = self.toks.get(self.i).cloned() else { return None };
        self.i += 1;
        self.eat('(')?;
        let a = self.expr()?;
        self.eat(',')?;
        let b = self.expr()?;
        self.eat(')')?;
        match f.as_str() {
            "min" => Some(Atom::Min(a, b)),
            "max" => Some(Atom::Max(a, b)),
            "floordiv" => Some(Atom::FloorDiv(a, b.as_const().filter(|&k| k > 0)?)),
            _ => None,
        }
    }

    fn eat(&mut self, c: char) -> Option<()> {
        self.peek_op(c).then(|| self.i += 1)
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
            Tok::Id(_) if self.peek_op('(') => {
                self.i -= 1;
                Some(self.call()?.simplified())
            }
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
    fn atoms_print_parse_evaluate_and_bound() {
        // Canonical text, read back to the same polynomial.
        assert_eq!(p("seq").size_min(&p("3")).to_string(), "min(3,seq)");
        assert_eq!(p("min(seq, 3) + 1").to_string(), "min(3,seq)+1");
        assert_eq!(p("2*floordiv(seq+1, 2)").to_string(), "2*floordiv(seq+1,2)");
        assert_eq!(p("max(a-1, b)").to_string(), "max(a-1,b)");
        for s in ["min(3,seq)", "floordiv(seq+1,2)", "c*max(a-1,b)+1", "min(3,floordiv(s,2))"] {
            assert_eq!(p(s).to_string(), s);
        }
        assert!(Poly::parse("floordiv(s,0)").is_none());
        assert!(Poly::parse("floordiv(s,t)").is_none());
        assert!(Poly::parse("min(s)").is_none());
        // Simplifications: constants, a constant difference, exact division.
        assert_eq!(p("min(7, 3)"), p("3"));
        assert_eq!(p("max(seq+2, seq)"), p("seq+2"));
        assert_eq!(p("min(seq+2, seq)"), p("seq"));
        assert_eq!(p("floordiv(4*seq+8, 4)"), p("seq+2"));
        assert_eq!(p("floordiv(9, 2)"), p("4"));
        assert_eq!(p("floordiv(768*b*s, 1536)").to_string(), "floordiv(b*s,2)");
        assert_eq!(p("floordiv(6*s+4, 4)").to_string(), "floordiv(3*s+2,2)");
        assert_eq!(p("min(seq-1, seq)").to_string(), "min(seq,seq-1)");
        assert_eq!(p("min(seq, 0)"), p("0"));
        assert_eq!(p("max(seq, -2)"), p("seq"));
        assert_eq!(p("max(seq-3, 0)").to_string(), "max(0,seq-3)");
        // Plain symbols inside atoms; evaluation (clamped at 0) and bounds see through them.
        assert_eq!(p("min(seq,3)*b").symbols(), vec!["b".to_string(), "seq".to_string()]);
        assert_eq!(p("min(seq,3)").as_symbol(), None);
        let v: BTreeMap<String, i64> = [("seq".to_string(), 5), ("b".to_string(), 2)].into();
        assert_eq!(p("min(seq,3)*b").eval(&v), Some(6));
        assert_eq!(p("floordiv(seq+1,2)").eval(&v), Some(3));
        assert_eq!(p("max(seq-9,0)+1").eval(&v), Some(1));
        assert_eq!(p("min(seq-9,b)").eval(&v), Some(0));
        let bd: BTreeMap<String, usize> = [("seq".to_string(), 64)].into();
        assert_eq!(p("min(seq,3)").upper(&bd), Some(3));
        assert_eq!(p("min(seq,x)").upper(&bd), Some(64));
        assert_eq!(p("floordiv(seq+1,2)").upper(&bd), Some(32));
        assert_eq!(p("max(seq,x)").upper(&bd), None);
        // Substitution inside atoms re-simplifies.
        let sub: BTreeMap<String, Poly> = [("seq".to_string(), p("2"))].into();
        assert_eq!(p("min(seq,3)+floordiv(seq+t,2)").substitute(&sub).to_string(), "floordiv(t+2,2)+2");
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
