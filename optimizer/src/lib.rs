//! The slmtvm e-graph optimizer (egg): the IR graph goes into an e-graph ([`convert`]), rule
//! sets ([`rules`]) add equivalent forms until saturation or a limit, and extraction picks the
//! cheapest form under a target-aware cost model ([`cost`]). [`optimize`] returns the new graph
//! and a [`Report`] of what happened (rewrites applied with counts, cost before and after, why
//! saturation stopped — a limit is a normal outcome, not an error).
//!
//! egg's `deterministic` feature is on and saturation stops only at deterministic limits
//! (iterations, e-nodes), so the same graph and options give the same result on any machine
//! under any load. The time limit is a guard against a runaway, not a limit: reaching it is an
//! [`Error::TimeLimit`] naming the flag that raises it, never a silently different graph.
#![warn(missing_docs)]

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod error;
pub mod extract;
pub mod lang;
pub mod quantize;
pub mod rules;

pub use cost::CostModel;
pub use error::{Error, Result};

use egg::{Runner, StopReason};
use slmtvm_ir::Graph;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much to optimize, within which limits.
#[derive(Clone, Debug)]
pub struct Options {
    /// 0: no optimizer; 1: algebraic simplification, constant folding, recognition of GELU,
    /// MatMul + bias as one Gemm.
    pub level: u8,
    /// Saturation stops after this many iterations.
    pub iter_limit: usize,
    /// ... or once the e-graph has this many e-nodes.
    pub node_limit: usize,
    /// A guard: saturation still running after this long is an [`Error::TimeLimit`] (a result
    /// that depended on the machine's speed would break reproducible builds).
    pub time_limit: Duration,
    /// The target's cost model.
    pub cost: CostModel,
    /// Run only these rule sets (names from [`RULE_SETS`]) instead of all of `level`'s; the
    /// golden filetests use it to test one set at a time.
    pub sets: Option<Vec<String>>,
}

/// The default [`Options::time_limit`], in seconds (`--opt-time-limit`): far above what the
/// deterministic limits take on the models here (MiniLM-class: ~0.3 s).
pub const DEFAULT_TIME_LIMIT_S: u64 = 60;

impl Default for Options {
    fn default() -> Options {
        Options {
            level: 1,
            iter_limit: 12,
            node_limit: 50_000,
            time_limit: Duration::from_secs(DEFAULT_TIME_LIMIT_S),
            cost: CostModel::default(),
            sets: None,
        }
    }
}

/// What an optimization did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The level run.
    pub level: u8,
    /// Rewrites that changed the e-graph, by rule, summed over iterations.
    pub applied: BTreeMap<String, usize>,
    /// Estimated cost (cycles, see [`cost`]) of the graph before and after.
    pub cost_before: f64,
    /// See `cost_before`.
    pub cost_after: f64,
    /// Nodes before and after.
    pub nodes_before: usize,
    /// See `nodes_before`.
    pub nodes_after: usize,
    /// Why saturation stopped.
    pub stop: String,
    /// Iterations run.
    pub iterations: usize,
    /// E-nodes and e-classes at the end.
    pub egraph_nodes: usize,
    /// See `egraph_nodes`.
    pub egraph_classes: usize,
    /// Wall time of the whole optimization, in milliseconds.
    pub millis: f64,
    /// The optimized graph's operators by kind (`Attention`, `RmsNorm`, `MatMul`, …).
    pub ops_after: BTreeMap<String, usize>,
}

impl Report {
    /// The report as text lines (what `slmtvm build --explain` prints).
    pub fn text(&self) -> String {
        if self.level == 0 {
            return "optimizer: off (--opt-level 0)\n".to_string();
        }
        let mut s = format!(
            "optimizer: level {}, stop: {} after {} iteration(s); e-graph {} nodes in {} classes; {:.1} ms\n",
            self.level, self.stop, self.iterations, self.egraph_nodes, self.egraph_classes, self.millis
        );
        if self.applied.is_empty() {
            s.push_str("rewrites applied: none\n");
        } else {
            s.push_str("rewrites applied:\n");
            for (r, n) in &self.applied {
                s.push_str(&format!("  {r:28} {n}\n"));
            }
        }
        s.push_str(&format!("nodes: {} -> {}\n", self.nodes_before, self.nodes_after));
        let ops: Vec<String> = self.ops_after.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!("operators after: {}\n", ops.join(", ")));
        s.push_str(&format!("cost: {:.0} -> {:.0} (estimated cycles)\n", self.cost_before, self.cost_after));
        s
    }
}

/// The estimated cost of `g` under `model`: each node once.
pub fn graph_cost(g: &Graph, model: &CostModel) -> Result<f64> {
    let (egraph, loaded) = convert::to_egraph(g)?;
    let mut total = 0.0;
    for n in &g.nodes {
        let ch: Vec<egg::Id> = n
            .inputs
            .iter()
            .map(|i| match i {
                Some(v) => loaded.value_class.get(v).map(|&c| egraph.find(c)),
                None => egraph.lookup(lang::Node::Absent),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Undefined { what: format!("node '{}'", n.name) })?;
        total += model.node_cost(&egraph, &lang::Node::Op(lang::OpKey::new(n.op.clone()), ch));
    }
    Ok(total)
}

/// The names of the rule sets, in the order level 1 runs them.
pub const RULE_SETS: &[&str] = &["algebra", "recognize", "fuse", "layout"];

/// The rule set called `name` (one of [`RULE_SETS`]).
pub fn rule_set_named(name: &str) -> Option<Vec<rules::Rule>> {
    Some(match name {
        "algebra" => rules::algebra::rules(),
        "recognize" => rules::recognize::rules(),
        "fuse" => rules::fuse::rules(),
        "layout" => rules::layout::rules(),
        _ => return None,
    })
}

/// The rewrite rules of `level`: none at 0; every set of [`RULE_SETS`] at 1.
pub fn rule_set(level: u8) -> Vec<rules::Rule> {
    if level == 0 {
        return vec![];
    }
    RULE_SETS.iter().flat_map(|s| rule_set_named(s).unwrap_or_default()).collect()
}

/// The rules `opts` selects: its named sets, else all of its level's.
fn selected_rules(opts: &Options) -> Result<Vec<rules::Rule>> {
    let Some(sets) = &opts.sets else { return Ok(rule_set(opts.level)) };
    let mut r = Vec::new();
    for s in sets {
        r.extend(
            rule_set_named(s).ok_or_else(|| Error::UnknownRuleSet { given: s.clone(), known: RULE_SETS.join(", ") })?,
        );
    }
    Ok(r)
}

/// Optimizes `g`.
pub fn optimize(g: &Graph, opts: &Options) -> Result<(Graph, Report)> {
    let start = Instant::now();
    let mut report = Report { level: opts.level, nodes_before: g.nodes.len(), ..Report::default() };
    if opts.level == 0 {
        report.nodes_after = g.nodes.len();
        report.stop = "off".into();
        return Ok((g.clone(), report));
    }
    report.cost_before = graph_cost(g, &opts.cost)?;
    let (egraph, loaded) = convert::to_egraph(g)?;
    let rewrites: Vec<_> = selected_rules(opts)?.iter().map(rules::Rule::to_rewrite).collect();
    let runner = Runner::default()
        .with_egraph(egraph)
        .with_iter_limit(opts.iter_limit)
        .with_node_limit(opts.node_limit)
        .with_time_limit(opts.time_limit)
        .run(&rewrites);
    report.stop = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => return Err(Error::TimeLimit { secs: *t }),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    };
    report.iterations = runner.iterations.len();
    for it in &runner.iterations {
        for (r, &n) in &it.applied {
            if n > 0 {
                *report.applied.entry(r.to_string()).or_default() += n;
            }
        }
    }
    let egraph = runner.egraph;
    report.egraph_nodes = egraph.total_number_of_nodes();
    report.egraph_classes = egraph.number_of_classes();
    let out = convert::from_egraph(g, &loaded, &egraph, &opts.cost)?;
    report.nodes_after = out.nodes.len();
    for n in &out.nodes {
        *report.ops_after.entry(n.op.kind_name().to_string()).or_default() += 1;
    }
    report.cost_after = graph_cost(&out, &opts.cost)?;
    report.millis = start.elapsed().as_secs_f64() * 1e3;
    Ok((out, report))
}
