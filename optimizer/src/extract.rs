//! Extraction: the e-node each class is built from, chosen to minimize the cost of the graph
//! as a DAG — every class reachable from a choice counted once, however many paths lead to it.
//!
//! egg's `Extractor` minimizes the cost of the expression *tree*, in which a value used twice
//! counts twice. On a network every layer's input feeds several products (and a quantized
//! one's scale and zero point too), so a layer's tree cost multiplies the cost of everything
//! below it: the MiniLM-class encoder quantized by ONNX Runtime reaches 1.3·10²³ at the root,
//! where one product's fusion saves ~10⁵ — below the f64 resolution of the sums it is compared
//! in, so the last layer's products were left unfused by a rounding tie. Here the cost of a
//! choice is the sum, over the set of classes it reaches, of each class's chosen e-node's own
//! cost ([`CostModel::node_cost`]): the graph that would be built. Found greedily (a class's
//! set is its choice's own cost plus the union of its operands' sets), iterating to a fixed
//! point as egg's extractor does; an e-node whose operands reach its own class (a cycle) is
//! never chosen.

use crate::analysis::EG;
use crate::cost::CostModel;
use crate::lang::Node;
use egg::{Id, Language};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// One class's current choice.
struct Choice {
    node: Node,
    /// The DAG cost of the choice: the sum of `reach`'s values.
    total: f64,
    /// Every class the choice reaches (itself included), with its chosen e-node's own cost.
    reach: Rc<BTreeMap<Id, f64>>,
}

/// The cheapest e-node of every class that has a finite-cost acyclic one, under `model`.
pub fn choices(egraph: &EG, model: &CostModel) -> HashMap<Id, Node> {
    let mut ids: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    ids.sort_unstable();
    let own: HashMap<(Id, usize), f64> = ids
        .iter()
        .flat_map(|&c| egraph[c].nodes.iter().enumerate().map(move |(k, n)| ((c, k), n)))
        .map(|(key, n)| (key, model.node_cost(egraph, n)))
        .collect();
    let mut best: HashMap<Id, Choice> = HashMap::new();
    loop {
        let mut changed = false;
        for &c in &ids {
            for (k, n) in egraph[c].nodes.iter().enumerate() {
                let cost = own[&(c, k)];
                if !cost.is_finite() {
                    continue;
                }
                let Some(reach) = reach_of(egraph, &best, c, n, cost) else { continue };
                let total: f64 = reach.values().sum();
                if best.get(&c).is_none_or(|b| total < b.total) {
                    best.insert(c, Choice { node: n.clone(), total, reach: Rc::new(reach) });
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.into_iter().map(|(c, b)| (c, b.node)).collect()
}

/// The classes e-node `n` of class `c` (own cost `cost`) reaches through its operands' current
/// choices, or `None` when an operand has no choice yet or reaches `c` (a cycle).
fn reach_of(egraph: &EG, best: &HashMap<Id, Choice>, c: Id, n: &Node, cost: f64) -> Option<BTreeMap<Id, f64>> {
    let mut kids: Vec<&Choice> = Vec::with_capacity(n.children().len());
    for &ch in n.children() {
        let b = best.get(&egraph.find(ch))?;
        if b.reach.contains_key(&c) {
            return None;
        }
        kids.push(b);
    }
    // Start from the largest operand set and add the others to it.
    kids.sort_by_key(|b| std::cmp::Reverse(b.reach.len()));
    let mut reach = kids.first().map_or_else(BTreeMap::new, |b| (*b.reach).clone());
    for b in kids.iter().skip(1) {
        for (&k, &v) in b.reach.iter() {
            reach.entry(k).or_insert(v);
        }
    }
    reach.insert(c, cost);
    Some(reach)
}
