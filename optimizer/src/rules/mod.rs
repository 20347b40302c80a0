//! Rewrite rules. Each rule is one named entry of a rule set: the operator kind it looks at
//! and a function that, given an e-node of that kind, adds the equivalent form to the e-graph
//! and returns its class (or `None` when the rule's conditions do not hold). The conditions are
//! named predicates in [`predicates`]. egg's `Runner` applies the rules to saturation within
//! its limits; every union is recorded per rule for `--explain`.

pub mod algebra;
pub mod fuse;
pub mod layout;
pub mod predicates;
pub mod recognize;

use crate::analysis::{EG, GraphAnalysis};
use crate::lang::Node;
use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};

/// A rule's rewrite: `(egraph, class, node)` → the class of the equivalent form.
pub type RewriteFn = fn(&mut EG, Id, &Node) -> Option<Id>;

/// One rule.
#[derive(Clone, Copy)]
pub struct Rule {
    /// Its name (`transpose-transpose`).
    pub name: &'static str,
    /// The operator kind (`Op::kind_name`) of the e-nodes it looks at.
    pub kind: &'static str,
    /// What it does.
    pub rewrite: RewriteFn,
}

struct KindSearcher(&'static str);

impl Searcher<Node, GraphAnalysis> for KindSearcher {
    fn search_eclass_with_limit(&self, egraph: &EG, eclass: Id, limit: usize) -> Option<SearchMatches<'_, Node>> {
        let found = limit > 0 && egraph[eclass].nodes.iter().any(|n| n.op().is_some_and(|op| op.kind_name() == self.0));
        found.then(|| SearchMatches { eclass, substs: vec![Subst::default()], ast: None })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

struct FnApplier(&'static str, RewriteFn);

impl Applier<Node, GraphAnalysis> for FnApplier {
    fn apply_one(
        &self,
        egraph: &mut EG,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<Node>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let nodes: Vec<Node> = egraph[eclass]
            .nodes
            .iter()
            .filter(|n| n.op().is_some_and(|op| op.kind_name() == self.0))
            .cloned()
            .collect();
        let mut changed = Vec::new();
        for n in nodes {
            if let Some(new) = (self.1)(egraph, eclass, &n)
                && egraph.union(eclass, new)
            {
                changed.push(egraph.find(eclass));
            }
        }
        changed
    }
}

impl Rule {
    /// The egg rewrite.
    pub fn to_rewrite(&self) -> Rewrite<Node, GraphAnalysis> {
        Rewrite::new(self.name, KindSearcher(self.kind), FnApplier(self.kind, self.rewrite))
            .unwrap_or_else(|e| panic!("rule {}: {e}", self.name))
    }
}

/// Adds an operator node over existing classes.
pub fn add_op(egraph: &mut EG, op: slmtvm_ir::Op, children: Vec<Id>) -> Id {
    egraph.add(Node::Op(crate::lang::OpKey::new(op), children))
}

/// `op` over `ins` when it type-checks to class `c`'s type (so replacing `c` keeps every
/// consumer's shape).
pub fn same_typed(egraph: &mut EG, c: Id, op: slmtvm_ir::Op, ins: Vec<Id>) -> Option<Id> {
    let new = add_op(egraph, op, ins);
    let ty = |id| predicates::ty(egraph, id);
    (egraph[new].data.valid && ty(new).is_some() && ty(new) == ty(c)).then_some(new)
}
