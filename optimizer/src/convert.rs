//! IR graph → e-graph, and an extracted choice of e-nodes → IR graph.
//!
//! The round trip keeps the graph's interface exactly (input and output names, types and
//! order) and the names of every value and node that survive; when no rule runs it gives back
//! the same graph, except that identical nodes (same operator, same operands) become one, as
//! the e-graph's hash-consing merges them.

use crate::analysis::{EG, GraphAnalysis};
use crate::lang::{Node, OpKey};
use crate::{Error, Result};
use egg::Id;
use egg::Language;
use slmtvm_ir::{Graph, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Where an IR graph went in its e-graph.
pub struct Loaded {
    /// The `Outputs` root.
    pub root: Id,
    /// The class of every value of the graph.
    pub value_class: BTreeMap<ValueId, Id>,
    /// The class of every node's operator e-node (for a multi-output operator, the tuple).
    pub node_class: Vec<Id>,
}

/// Adds graph `g` to a fresh e-graph.
pub fn to_egraph(g: &Graph) -> Result<(EG, Loaded)> {
    let analysis =
        GraphAnalysis::new(g.inputs.iter().map(|&i| g.ty(i).clone()).collect(), g.consts.values().cloned().collect());
    let mut egraph = EG::new(analysis);
    let mut class: BTreeMap<ValueId, Id> = BTreeMap::new();
    for (k, &i) in g.inputs.iter().enumerate() {
        class.insert(i, egraph.add(Node::Input(k as u32)));
    }
    for (k, &c) in g.consts.keys().enumerate() {
        class.insert(c, egraph.add(Node::Const(k as u32)));
    }
    let absent = egraph.add(Node::Absent);
    let mut node_class = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let mut ch = Vec::with_capacity(n.inputs.len());
        for i in &n.inputs {
            ch.push(match i {
                None => absent,
                Some(v) => *class.get(v).ok_or_else(|| Error::Undefined { what: format!("node '{}'", n.name) })?,
            });
        }
        let id = egraph.add(Node::Op(OpKey::new(n.op.clone()), ch));
        node_class.push(id);
        if n.op.num_outputs() > 1 {
            for (k, &o) in n.outputs.iter().enumerate() {
                class.insert(o, egraph.add(Node::Get(k as u32, [id])));
            }
        } else if let [o] = n.outputs.as_slice() {
            class.insert(*o, id);
        }
    }
    let outs: Vec<Id> = g
        .outputs
        .iter()
        .map(|o| {
            class.get(o).copied().ok_or_else(|| Error::Undefined { what: format!("output '{}'", g.value(*o).name) })
        })
        .collect::<Result<_>>()?;
    let root = egraph.add(Node::Outputs(outs));
    egraph.rebuild();
    Ok((egraph, Loaded { root, value_class: class, node_class }))
}

/// Builds the IR graph of the e-nodes extraction picks under `model` ([`crate::extract`]),
/// reachable from `root`. Values, nodes and constants keep the names they had in `orig` where
/// their class had one.
pub fn from_egraph(orig: &Graph, loaded: &Loaded, egraph: &EG, model: &crate::CostModel) -> Result<Graph> {
    let names = OrigNames::of(orig, loaded, egraph);
    let chosen = choose(egraph, &crate::extract::choices(egraph, model), loaded.root)?;
    let order = build_order(orig, loaded, egraph, &chosen);
    let mut b = Builder { g: Graph::new(orig.name.clone()), used: BTreeSet::new(), node_names: BTreeSet::new() };
    for &i in &orig.inputs {
        let name = b.fresh(&orig.value(i).name);
        b.g.add_input(name, orig.ty(i).clone());
    }
    let out_names: Vec<String> = orig.outputs.iter().map(|&o| orig.value(o).name.clone()).collect();
    // Class -> the IR values of its choice (one, or one per output of a multi-output node).
    let mut built: HashMap<Id, Vec<Option<ValueId>>> = HashMap::new();
    for &c in &order {
        let vals = b.build(c, &chosen[&c], egraph, &names, &built, &out_names)?;
        built.insert(c, vals);
    }
    if built.len() != chosen.len() {
        return Err(Error::Extraction { what: "has a cycle".into() });
    }
    let mut g = b.g;
    g.infer().map_err(Error::TypeCheck)?;
    g.remove_dead();
    for (k, (&a, &b)) in orig.outputs.iter().zip(&g.outputs).enumerate() {
        if orig.ty(a) != g.ty(b) && orig.ty(a).to_string() != g.ty(b).to_string() {
            return Err(Error::Extraction {
                what: format!("changed output {k} '{}': {} before, {} after", orig.value(a).name, orig.ty(a), g.ty(b)),
            });
        }
    }
    Ok(g)
}

/// The original graph's names by (canonical) class; the first value of a class wins.
struct OrigNames {
    value: HashMap<Id, String>,
    node: HashMap<Id, String>,
    /// Output k of a multi-output operator's class.
    tuple: HashMap<(Id, usize), String>,
    /// How many outputs the original node of a multi-output class used (a prefix).
    tuple_len: HashMap<Id, usize>,
}

impl OrigNames {
    fn of(orig: &Graph, loaded: &Loaded, egraph: &EG) -> OrigNames {
        let mut n =
            OrigNames { value: HashMap::new(), node: HashMap::new(), tuple: HashMap::new(), tuple_len: HashMap::new() };
        for (&v, &c) in &loaded.value_class {
            n.value.entry(egraph.find(c)).or_insert_with(|| orig.value(v).name.clone());
        }
        for (node, &c) in orig.nodes.iter().zip(&loaded.node_class) {
            let c = egraph.find(c);
            n.node.entry(c).or_insert_with(|| node.name.clone());
            if node.op.num_outputs() > 1 {
                for (k, &o) in node.outputs.iter().enumerate() {
                    n.tuple.entry((c, k)).or_insert_with(|| orig.value(o).name.clone());
                }
                let e = n.tuple_len.entry(c).or_insert(0);
                *e = (*e).max(node.outputs.len());
            }
        }
        n
    }
}

/// The chosen e-node of every class reachable from `root`, from every class's `best`.
fn choose(egraph: &EG, best: &HashMap<Id, Node>, root: Id) -> Result<HashMap<Id, Node>> {
    let mut chosen: HashMap<Id, Node> = HashMap::new();
    let mut todo = vec![egraph.find(root)];
    while let Some(c) = todo.pop() {
        if chosen.contains_key(&c) {
            continue;
        }
        let node = best
            .get(&c)
            .ok_or_else(|| Error::Extraction { what: format!("has no finite-cost form for e-class {c}") })?
            .clone();
        for &ch in node.children() {
            todo.push(egraph.find(ch));
        }
        chosen.insert(c, node);
    }
    Ok(chosen)
}

/// The order the chosen classes are built in: topological (Kahn's algorithm), ties broken by
/// the position the class had in `orig` (its node's index; constants by table index first),
/// so an unchanged graph keeps its order. Classes on a cycle are left out.
fn build_order(orig: &Graph, loaded: &Loaded, egraph: &EG, chosen: &HashMap<Id, Node>) -> Vec<Id> {
    let producers = orig.producers();
    let mut orig_pos: HashMap<Id, f64> = HashMap::new();
    for (i, &c) in loaded.node_class.iter().enumerate() {
        orig_pos.entry(egraph.find(c)).or_insert(i as f64);
    }
    for (&v, &c) in &loaded.value_class {
        if let Some(&ni) = producers.get(&v) {
            orig_pos.entry(egraph.find(c)).or_insert(ni as f64);
        }
    }
    let mut prio: HashMap<Id, f64> = HashMap::new();
    fn priority(
        c: Id,
        egraph: &EG,
        chosen: &HashMap<Id, Node>,
        orig_pos: &HashMap<Id, f64>,
        prio: &mut HashMap<Id, f64>,
    ) -> f64 {
        if let Some(&p) = prio.get(&c) {
            return p;
        }
        let p = match &chosen[&c] {
            Node::Input(k) => -2.0 + f64::from(*k) * 1e-9,
            Node::Const(k) => -1.0 + f64::from(*k) * 1e-9,
            Node::Absent => -3.0,
            node => match orig_pos.get(&c) {
                Some(&p) => p,
                None => {
                    node.children()
                        .iter()
                        .map(|&ch| priority(egraph.find(ch), egraph, chosen, orig_pos, prio))
                        .fold(-1.0, f64::max)
                        + 0.5
                }
            },
        };
        prio.insert(c, p);
        p
    }
    let classes: Vec<Id> = chosen.keys().copied().collect();
    for &c in &classes {
        priority(c, egraph, chosen, &orig_pos, &mut prio);
    }
    let mut waiting: HashMap<Id, usize> = HashMap::new();
    let mut users: HashMap<Id, Vec<Id>> = HashMap::new();
    for (&c, n) in chosen {
        let mut seen = std::collections::HashSet::new();
        for &ch in n.children() {
            let ch = egraph.find(ch);
            if seen.insert(ch) {
                *waiting.entry(c).or_insert(0) += 1;
                users.entry(ch).or_default().push(c);
            }
        }
    }
    let key = |c: Id| -> (i64, usize) { ((prio[&c] * 1e9) as i64, usize::from(c)) };
    let mut ready: BTreeSet<((i64, usize), Id)> =
        classes.iter().filter(|c| !waiting.contains_key(c)).map(|&c| (key(c), c)).collect();
    let mut order = Vec::with_capacity(classes.len());
    while let Some(first) = ready.pop_first() {
        let c = first.1;
        for &u in users.get(&c).map(Vec::as_slice).unwrap_or_default() {
            if let Some(w) = waiting.get_mut(&u) {
                *w -= 1;
                if *w == 0 {
                    ready.insert((key(u), u));
                }
            }
        }
        order.push(c);
    }
    order
}

/// The graph being built and the value and node names it has taken.
struct Builder {
    g: Graph,
    used: BTreeSet<String>,
    node_names: BTreeSet<String>,
}

impl Builder {
    /// `base`, or `base_optK` with the first K it has not taken.
    fn fresh(&mut self, base: &str) -> String {
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        let mut k = 1;
        loop {
            let n = format!("{base}_opt{k}");
            if self.used.insert(n.clone()) {
                return n;
            }
            k += 1;
        }
    }

    /// `base`, or `base` with the first suffix `sep K` not taken as a node name.
    fn node_name(&mut self, base: &str, sep: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.node_names.insert(name.clone()) {
            name = format!("{base}{sep}{k}");
            k += 1;
        }
        name
    }

    /// Adds class `c`'s chosen e-node `node` (its operands already `built`); returns its
    /// values.
    fn build(
        &mut self,
        c: Id,
        node: &Node,
        egraph: &EG,
        names: &OrigNames,
        built: &HashMap<Id, Vec<Option<ValueId>>>,
        out_names: &[String],
    ) -> Result<Vec<Option<ValueId>>> {
        let first = |x: Id| built.get(&egraph.find(x)).and_then(|v| v.first().copied()).flatten();
        Ok(match node {
            Node::Input(k) => vec![self.g.inputs.get(*k as usize).copied()],
            Node::Const(k) => {
                let t = egraph.analysis.consts[*k as usize].as_ref().clone();
                let base = names.value.get(&c).cloned().unwrap_or_else(|| format!("opt_const{k}"));
                let name = self.fresh(&base);
                vec![Some(self.g.add_const(name, t))]
            }
            Node::Absent => vec![None],
            Node::Get(k, [p]) => {
                let p = egraph.find(*p);
                vec![built.get(&p).and_then(|v| v.get(*k as usize).copied()).flatten()]
            }
            Node::Op(key, ch) => {
                let inputs: Vec<Option<ValueId>> = ch.iter().map(|&x| first(x)).collect();
                let n_out = names.tuple_len.get(&c).copied().unwrap_or_else(|| key.op.num_outputs());
                let base = names.value.get(&c).cloned().unwrap_or_else(|| format!("opt_{}", key.op.kind_name()));
                let outs: Vec<String> = (0..n_out)
                    .map(|k| {
                        let b = match names.tuple.get(&(c, k)) {
                            Some(t) => t.clone(),
                            _ if n_out == 1 => base.clone(),
                            _ => format!("{base}:{k}"),
                        };
                        self.fresh(&b)
                    })
                    .collect();
                let nbase = names.node.get(&c).cloned().unwrap_or_else(|| format!("opt/{}", key.op.kind_name()));
                let nname = self.node_name(&nbase, "_opt");
                let ids = self.g.add_node(nname, (*key.op).clone(), inputs, &outs);
                ids.into_iter().map(Some).collect()
            }
            Node::Outputs(ch) => {
                for (j, &x) in ch.iter().enumerate() {
                    let v =
                        first(x).ok_or_else(|| Error::Extraction { what: format!("has no value for output {j}") })?;
                    self.output(v, &out_names[j]);
                }
                vec![]
            }
        })
    }

    /// Makes `v` the next graph output, named `want`: an input, a constant, a value already
    /// output, or one named otherwise gets an Identity that gives the output its name (taken
    /// from whatever had it).
    fn output(&mut self, v: ValueId, want: &str) {
        let v = if self.g.value(v).name == want {
            v
        } else {
            if let Some(other) = self.g.find(want) {
                let renamed = self.fresh(&format!("{want}_inner"));
                self.g.values[other.index()].name = renamed;
            }
            self.used.insert(want.to_string());
            let nname = self.node_name(&format!("{want}/identity"), "_");
            let op = slmtvm_ir::Op::Unary(slmtvm_ir::ops::UnaryOp::Identity);
            self.g.add_node(nname, op, vec![Some(v)], &[want.to_string()])[0]
        };
        self.g.outputs.push(v);
    }
}
