//! The textual form of a graph. It prints and parses back exactly: `parse(print(g)) == g` for
//! a canonical graph (see [`Graph::canonicalize`]).
//!
//! ```text
//! graph "tiny" {
//!   input %x: f32[2, seq<=8]
//!   const %w: f32[2] = [0.5, -1.0]
//!   %y: f32[2, seq<=8] = Binary(Mul) %x, %w @"mul0"
//!   output %y
//! }
//! ```
//!
//! Operators are written in RON (their serde form, newtype variants unwrapped); absent
//! optional inputs are `_`; constants list their elements in row-major order (floats in Rust's
//! shortest round-trip notation, NaN as `nan:0x<bits>`).

use crate::ops::Op;
use crate::{DType, Error, Graph, Result, Shape, Tensor, TypeInfo, ValueId};
use half::f16;
use std::collections::BTreeMap;
use std::fmt::Write;

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES)
}

/// Prints an operator in the text form's notation.
pub fn print_op(op: &Op) -> String {
    ron_options().to_string(op).unwrap_or_else(|e| format!("<unprintable op: {e}>"))
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn value_ref(name: &str) -> String {
    if is_plain_name(name) { format!("%{name}") } else { format!("%{}", quote(name)) }
}

fn push_f32(o: &mut String, v: f32) {
    if v.is_nan() {
        let _ = write!(o, "nan:0x{:08x}", v.to_bits());
    } else {
        let _ = write!(o, "{v:?}");
    }
}

fn print_data(o: &mut String, t: &Tensor) {
    o.push('[');
    macro_rules! list {
        ($a:expr, $f:expr) => {
            for (i, v) in $a.iter().enumerate() {
                if i > 0 {
                    o.push_str(", ");
                }
                $f(&mut *o, *v);
            }
        };
    }
    match t {
        Tensor::F32(a) => list!(a, push_f32),
        Tensor::F16(a) => list!(a, |o: &mut String, v: f16| {
            if v.is_nan() {
                let _ = write!(o, "nan:0x{:04x}", v.to_bits());
            } else {
                push_f32(o, v.to_f32())
            }
        }),
        Tensor::I8(a) => list!(a, |o: &mut String, v: i8| {
            let _ = write!(o, "{v}");
        }),
        Tensor::U8(a) => list!(a, |o: &mut String, v: u8| {
            let _ = write!(o, "{v}");
        }),
        Tensor::I32(a) => list!(a, |o: &mut String, v: i32| {
            let _ = write!(o, "{v}");
        }),
        Tensor::I64(a) => list!(a, |o: &mut String, v: i64| {
            let _ = write!(o, "{v}");
        }),
        Tensor::Bool(a) => list!(a, |o: &mut String, v: bool| {
            let _ = write!(o, "{v}");
        }),
    }
    o.push(']');
}

/// Prints the graph in the text form.
pub fn print(g: &Graph) -> String {
    let mut o = String::new();
    let decl = |id: ValueId| format!("{}: {}", value_ref(&g.value(id).name), g.ty(id));
    let _ = writeln!(o, "graph {} {{", quote(&g.name));
    for &i in &g.inputs {
        let _ = writeln!(o, "  input {}", decl(i));
    }
    for (&c, t) in &g.consts {
        let _ = write!(o, "  const {} = ", decl(c));
        print_data(&mut o, t);
        o.push('\n');
    }
    for n in &g.nodes {
        let outs: Vec<String> = n.outputs.iter().map(|&v| decl(v)).collect();
        let ins: Vec<String> =
            n.inputs.iter().map(|i| i.map_or_else(|| "_".to_string(), |i| value_ref(&g.value(i).name))).collect();
        let _ = writeln!(o, "  {} = {} {} @{}", outs.join(", "), print_op(&n.op), ins.join(", "), quote(&n.name));
    }
    for &v in &g.outputs {
        let _ = writeln!(o, "  output {}", value_ref(&g.value(v).name));
    }
    o.push_str("}\n");
    o
}

/// A cursor over one line.
struct Cur<'a> {
    s: &'a str,
    line: usize,
}

impl<'a> Cur<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T> {
        Err(Error::Parse { line: self.line, msg: msg.into() })
    }
    fn ws(&mut self) {
        self.s = self.s.trim_start();
    }
    fn eat(&mut self, p: &str) -> bool {
        self.ws();
        if let Some(r) = self.s.strip_prefix(p) {
            self.s = r;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> Result<()> {
        if self.eat(p) { Ok(()) } else { self.err(format!("expected `{p}` at `{}`", preview(self.s))) }
    }
    fn quoted(&mut self) -> Result<String> {
        self.expect("\"")?;
        let mut out = String::new();
        let mut it = self.s.char_indices();
        while let Some((i, c)) = it.next() {
            match c {
                '"' => {
                    self.s = &self.s[i + 1..];
                    return Ok(out);
                }
                '\\' => match it.next() {
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((j, 'u')) => {
                        let rest = &self.s[j + 1..];
                        let end = rest
                            .find('}')
                            .ok_or_else(|| Error::Parse { line: self.line, msg: "bad \\u escape".into() })?;
                        let code = u32::from_str_radix(rest.get(1..end).unwrap_or(""), 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| Error::Parse { line: self.line, msg: "bad \\u escape".into() })?;
                        out.push(code);
                        for _ in 0..=end {
                            it.next();
                        }
                    }
                    _ => return self.err("bad escape in string"),
                },
                c => out.push(c),
            }
        }
        self.err("unterminated string")
    }
    fn value_name(&mut self) -> Result<String> {
        self.expect("%")?;
        if self.s.starts_with('"') {
            return self.quoted();
        }
        let end = self
            .s
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')))
            .unwrap_or(self.s.len());
        if end == 0 {
            return self.err("expected a value name after `%`");
        }
        let (n, r) = self.s.split_at(end);
        self.s = r;
        Ok(n.to_string())
    }
    fn ty(&mut self) -> Result<TypeInfo> {
        self.ws();
        let end = self
            .s
            .find('[')
            .ok_or_else(|| Error::Parse { line: self.line, msg: "expected a type like f32[2, 3]".into() })?;
        let dtype = DType::from_name(self.s[..end].trim())
            .ok_or_else(|| Error::Parse { line: self.line, msg: format!("unknown dtype `{}`", &self.s[..end]) })?;
        let close =
            self.s.find(']').ok_or_else(|| Error::Parse { line: self.line, msg: "unterminated shape".into() })?;
        let shape =
            Shape::parse(&self.s[end..=close]).map_err(|m| Error::Parse { line: self.line, msg: m.to_string() })?;
        self.s = &self.s[close + 1..];
        Ok(TypeInfo::new(dtype, shape))
    }
    fn decl(&mut self) -> Result<(String, TypeInfo)> {
        let n = self.value_name()?;
        self.expect(":")?;
        Ok((n, self.ty()?))
    }
    /// An operator: an identifier, optionally followed by a balanced `( ... )` group.
    fn op(&mut self) -> Result<Op> {
        self.ws();
        let mut end = self.s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(self.s.len());
        if self.s[end..].starts_with('(') {
            let mut depth = 0i32;
            let mut in_str = false;
            let mut prev = ' ';
            for (i, c) in self.s[end..].char_indices() {
                match c {
                    '"' if prev != '\\' => in_str = !in_str,
                    '(' | '[' if !in_str => depth += 1,
                    ')' | ']' if !in_str => depth -= 1,
                    _ => {}
                }
                prev = c;
                if depth == 0 {
                    end += i + 1;
                    break;
                }
            }
            if depth != 0 {
                return self.err("unbalanced parentheses in operator");
            }
        }
        let text = &self.s[..end];
        self.s = &self.s[end..];
        ron_options().from_str(text).or_else(|e| self.err(format!("bad operator `{text}`: {e}")))
    }
}

fn preview(s: &str) -> &str {
    let end = s.char_indices().nth(40).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

fn parse_list<T: std::str::FromStr>(items: &str, line: usize) -> Result<Vec<T>> {
    items
        .split(',')
        .map(|x| x.trim().parse::<T>().map_err(|_| Error::Parse { line, msg: format!("bad element `{}`", x.trim()) }))
        .collect()
}

fn parse_f32(x: &str) -> Option<f32> {
    match x.strip_prefix("nan:0x") {
        Some(h) => u32::from_str_radix(h, 16).ok().map(f32::from_bits).filter(|v| v.is_nan()),
        None => x.parse::<f32>().ok(),
    }
}

fn parse_data(ty: &TypeInfo, text: &str, line: usize) -> Result<Tensor> {
    let dims =
        ty.shape.as_known().ok_or_else(|| Error::Parse { line, msg: "a constant must have a static shape".into() })?;
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| Error::Parse { line, msg: "constant data must be written as [v0, v1, ...]".into() })?;
    let items = if inner.trim().is_empty() { "" } else { inner };
    let bad = |x: &str| Error::Parse { line, msg: format!("bad element `{}`", x.trim()) };
    let fl = |x: &str| parse_f32(x.trim()).ok_or_else(|| bad(x));
    let split = || items.split(',').filter(|_| !items.is_empty());
    let t = match ty.dtype {
        DType::F32 => Tensor::from_vec(&dims, split().map(fl).collect::<Result<Vec<f32>>>()?),
        DType::F16 => Tensor::from_vec(
            &dims,
            split()
                .map(|x| match x.trim().strip_prefix("nan:0x") {
                    Some(h) => u16::from_str_radix(h, 16).map(f16::from_bits).map_err(|_| bad(x)),
                    None => fl(x).map(f16::from_f32),
                })
                .collect::<Result<Vec<f16>>>()?,
        ),
        DType::I8 => Tensor::from_vec(&dims, if items.is_empty() { vec![] } else { parse_list::<i8>(items, line)? }),
        DType::U8 => Tensor::from_vec(&dims, if items.is_empty() { vec![] } else { parse_list::<u8>(items, line)? }),
        DType::I32 => Tensor::from_vec(&dims, if items.is_empty() { vec![] } else { parse_list::<i32>(items, line)? }),
        DType::I64 => Tensor::from_vec(&dims, if items.is_empty() { vec![] } else { parse_list::<i64>(items, line)? }),
        DType::Bool => {
            Tensor::from_vec(&dims, if items.is_empty() { vec![] } else { parse_list::<bool>(items, line)? })
        }
    };
    t.map_err(|m| Error::Parse { line, msg: m.to_string() })
}

/// Parses the text form. The result is validated and canonical.
pub fn parse(text: &str) -> Result<Graph> {
    let mut g = Graph::default();
    let mut ids: BTreeMap<String, ValueId> = BTreeMap::new();
    let mut lines =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with("//"));
    let (hl, header) = lines.next().ok_or(Error::Parse { line: 1, msg: "empty text".into() })?;
    let mut c = Cur { s: header, line: hl };
    c.expect("graph")?;
    g.name = c.quoted()?;
    c.expect("{")?;
    let mut closed = false;
    let define = |g: &mut Graph, ids: &mut BTreeMap<String, ValueId>, name: String, ty: TypeInfo, line: usize| {
        if ids.contains_key(&name) {
            return Err(Error::Parse { line, msg: format!("value %{name} is defined twice") });
        }
        let id = g.add_value(name.clone(), ty);
        ids.insert(name, id);
        Ok(id)
    };
    for (ln, l) in lines {
        let mut c = Cur { s: l, line: ln };
        if closed {
            return c.err("text after the closing `}`");
        }
        if c.eat("}") {
            closed = true;
        } else if c.eat("input ") {
            let (n, ty) = c.decl()?;
            let id = define(&mut g, &mut ids, n, ty, ln)?;
            g.inputs.push(id);
        } else if c.eat("const ") {
            let (n, ty) = c.decl()?;
            c.expect("=")?;
            let t = parse_data(&ty, c.s, ln)?;
            c.s = "";
            let id = define(&mut g, &mut ids, n, ty, ln)?;
            g.consts.insert(id, t);
        } else if c.eat("output ") {
            let n = c.value_name()?;
            let id = *ids.get(&n).ok_or(Error::Parse { line: ln, msg: format!("output %{n} is not defined") })?;
            g.outputs.push(id);
        } else {
            let mut outs = vec![c.decl()?];
            while c.eat(",") {
                outs.push(c.decl()?);
            }
            c.expect("=")?;
            let op = c.op()?;
            let mut inputs = Vec::new();
            c.ws();
            if !c.s.starts_with('@') {
                loop {
                    if c.eat("_") {
                        inputs.push(None);
                    } else {
                        let n = c.value_name()?;
                        let id = *ids
                            .get(&n)
                            .ok_or(Error::Parse { line: ln, msg: format!("%{n} is used before it is defined") })?;
                        inputs.push(Some(id));
                    }
                    if !c.eat(",") {
                        break;
                    }
                }
            }
            c.expect("@")?;
            let name = c.quoted()?;
            let mut out_ids = Vec::new();
            for (n, ty) in outs {
                out_ids.push(define(&mut g, &mut ids, n, ty, ln)?);
            }
            g.nodes.push(crate::Node { name, op, inputs, outputs: out_ids });
        }
        c.ws();
        if !c.s.is_empty() && !closed {
            return c.err(format!("unexpected `{}`", preview(c.s)));
        }
    }
    if !closed {
        return Err(Error::Parse { line: text.lines().count(), msg: "missing closing `}`".into() });
    }
    g.validate()?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{BinaryOp, Split, UnaryOp};
    use crate::{Dim, Scalar};

    fn sample() -> Graph {
        let mut g = Graph::new("sample \"q\"");
        let x = g.add_input("x", TypeInfo::new(DType::F32, Shape(vec![Dim::Known(2), Dim::sym("seq", Some(8))])));
        let w = g.add_const("/w:0", Tensor::from_vec(&[2, 1], vec![0.5f32, f32::from_bits(0x7fc0_0001)]).unwrap());
        let e = g.add_const("empty", Tensor::from_vec::<i64>(&[0], vec![]).unwrap());
        let m = g.add_node("mul", Op::Binary(BinaryOp::Mul), vec![Some(x), Some(w)], &["m".into()]);
        let h = g.add_node(
            "hs",
            Op::Unary(UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.1 }),
            vec![Some(m[0])],
            &["h".into()],
        );
        let s = g.add_node(
            "split",
            Op::Split(Split { axis: 0, sizes: Some(vec![1, 1]), num_outputs: 2 }),
            vec![Some(h[0]), None, Some(e)],
            &["a b".into(), "c".into()],
        );
        let _ = Scalar::I64(0);
        g.outputs = vec![s[0], s[1]];
        for n in 0..g.values.len() {
            g.values[n].ty = TypeInfo::new(DType::F32, Shape(vec![Dim::Known(n)]));
        }
        g.values[e.index()].ty = TypeInfo::new(DType::I64, Shape::known(&[0]));
        g.values[w.index()].ty = TypeInfo::new(DType::F32, Shape::known(&[2, 1]));
        g
    }

    #[test]
    fn prints_and_parses_back_exactly() {
        let g = sample();
        let text = print(&g);
        assert!(text.contains("HardSigmoid(alpha:0.2,beta:0.1)"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(print(&back), text);
        assert_eq!(back.nodes, g.nodes);
        assert_eq!(back.values.len(), g.values.len());
        let (a, b) = (&back.consts[&ValueId(1)], &g.consts[&ValueId(1)]);
        assert_eq!(a.to_le_bytes(), b.to_le_bytes());
        println!("{text}");
    }

    #[test]
    fn fused_ops_print_and_parse_back() {
        use crate::ops::{Attention, RmsNorm};
        let mut g = Graph::new("fused");
        let ty = |s: &str| TypeInfo::new(DType::F32, Shape::parse(s).unwrap());
        let q = g.add_input("q", ty("[1, 4, 3, 8]"));
        let k = g.add_input("k", ty("[1, 2, t<=16, 8]"));
        let m = g.add_input("m", TypeInfo::new(DType::Bool, Shape::parse("[3, t<=16]").unwrap()));
        let s = g.add_const("s", Tensor::from_vec(&[8], vec![1.0f32; 8]).unwrap());
        let a = g.add_node(
            "att",
            Op::Attention(Attention { scale: Some(0.25), causal: true }),
            vec![Some(q), Some(k), Some(k), Some(m)],
            &["a".into()],
        );
        let b = g.add_node(
            "att2",
            Op::Attention(Attention { scale: None, causal: false }),
            vec![Some(q), Some(k), Some(k)],
            &["b".into()],
        );
        let r = g.add_node(
            "rms",
            Op::RmsNorm(RmsNorm { axis: -1, epsilon: 1e-6 }),
            vec![Some(a[0]), Some(s)],
            &["r".into()],
        );
        let y = g.add_node("silu", Op::Unary(UnaryOp::Silu), vec![Some(r[0])], &["y".into()]);
        g.outputs = vec![y[0], b[0]];
        g.infer().unwrap();
        let text = print(&g);
        for want in [
            "Attention(scale:Some(0.25),causal:true)",
            "Attention(scale:None,causal:false)",
            "RmsNorm(axis:-1,epsilon:1e-6)",
            "Unary(Silu)",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        let back = parse(&text).unwrap();
        assert_eq!(print(&back), text);
        assert_eq!(back.nodes, g.nodes);
    }

    #[test]
    fn dense_and_fused_mlp_print_and_parse_back() {
        use crate::ops::{Dense, FusedMlp};
        let mut g = Graph::new("mlp");
        let x = g.add_input("x", TypeInfo::new(DType::F32, Shape::parse("[1, s<=8, 4]").unwrap()));
        let w = |g: &mut Graph, n: &str, d: &[usize]| {
            let v = vec![0.5f32; d.iter().product()];
            g.add_const(n, Tensor::from_vec(d, v).unwrap())
        };
        let (w1, b1, wg, wu, wd) = (
            w(&mut g, "w1", &[4, 4]),
            w(&mut g, "b1", &[4]),
            w(&mut g, "wg", &[4, 6]),
            w(&mut g, "wu", &[4, 6]),
            w(&mut g, "wd", &[6, 3]),
        );
        let act = Some(UnaryOp::Gelu { tanh_approx: true });
        let d = g.add_node("d", Op::Dense(Dense { activation: act }), vec![Some(x), Some(w1), Some(b1)], &["d".into()]);
        let e = g.add_node("e", Op::Dense(Dense { activation: None }), vec![Some(d[0]), Some(w1)], &["e".into()]);
        let m = g.add_node(
            "m",
            Op::FusedMlp(FusedMlp { activation: UnaryOp::Silu }),
            vec![Some(e[0]), Some(wg), Some(wu), Some(wd)],
            &["y".into()],
        );
        g.outputs = vec![m[0]];
        g.infer().unwrap();
        let text = print(&g);
        for want in
            ["Dense(activation:Some(Gelu(tanh_approx:true)))", "Dense(activation:None)", "FusedMlp(activation:Silu)"]
        {
            assert!(text.contains(want), "{want} in {text}");
        }
        let back = parse(&text).unwrap();
        assert_eq!(print(&back), text);
        assert_eq!(back.nodes, g.nodes);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let bad = "graph \"g\" {\n  input %x: f33[2]\n}\n";
        match parse(bad) {
            Err(Error::Parse { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(parse("graph \"g\" {\n  %y: f32[2] = Nope %x @\"n\"\n}").is_err());
        assert!(parse("graph \"g\" {\n").is_err());
    }
}
