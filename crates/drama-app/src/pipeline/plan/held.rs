//! Work that an active run of the same drama is already making.
//!
//! A plan is made from the stored drama and its objects only, so two `generate` requests for
//! one drama that overlap (a double tap; "generate episode" while a drama-wide run is queued)
//! each planned, and paid for, the same portraits, scenes and clips. A task whose node key and
//! inputs an unsettled task of an active run holds is left out of a new plan (unless the
//! request forces it): that run makes it. The engine orders tasks within one run only, so a
//! held task that a task of the new plan needs first stays in the new plan (and is made again,
//! as before), rather than letting its dependent start without it; and so does a held task
//! that needs a task of the new plan first, which would otherwise run in its own run on what
//! the new plan makes again. A task whose cancellation was requested holds nothing.

use std::collections::{HashMap, HashSet};

use drama_jobs::{JobId, JobView, NodeType, RunId};
use serde_json::{Value, json};

use super::{Planner, Scope, Task};
use crate::pipeline::spec::kind;

/// What a task makes from, as far as paying for it twice goes. A scene writer's payload also
/// carries its own run's wiring (the portraits in that run, its stitch, its group); what it
/// writes depends on the drama, the episode and the model only. Compared as JSON values, not
/// as text: a payload read back from the store may list its members in another order.
fn inputs_of(kind: &str, payload: &Value) -> Value {
    if kind == kind::WRITE_SCENES {
        json!([payload["drama"], payload["episode"], payload["model"]])
    } else {
        payload.clone()
    }
}

/// The tasks that active runs of a drama have still to settle: by node key, their inputs and
/// the run that makes them.
#[derive(Debug, Clone, Default)]
pub struct Held {
    tasks: HashMap<String, Vec<(Value, RunId)>>,
}

impl Held {
    /// The unsettled tasks among `nodes` (nodes of the drama's active runs), but those
    /// asked to stop: a task whose cancellation was requested (on itself, a group above it
    /// or its run) is running only until its handler sees it, and then ends cancelled
    /// without its product.
    pub fn from_nodes(nodes: &[JobView]) -> Self {
        let parents: HashMap<JobId, Option<JobId>> =
            nodes.iter().map(|n| (n.id, n.parent_id)).collect();
        let cancelled: HashSet<JobId> = nodes
            .iter()
            .filter(|n| n.cancel_requested)
            .map(|n| n.id)
            .collect();
        let stopping = |n: &JobView| {
            if cancelled.contains(&n.run_id) {
                return true;
            }
            // Up the tree; a parent not among `nodes` ends the walk, as would a cycle.
            let mut at = Some(n.id);
            for _ in 0..=nodes.len() {
                match at {
                    Some(id) if cancelled.contains(&id) => return true,
                    Some(id) => at = parents.get(&id).copied().flatten(),
                    None => return false,
                }
            }
            false
        };
        let mut tasks: HashMap<String, Vec<(Value, RunId)>> = HashMap::new();
        for n in nodes {
            if n.node_type == NodeType::Task && !n.state.is_settled() && !stopping(n) {
                tasks
                    .entry(n.key.clone())
                    .or_default()
                    .push((inputs_of(&n.kind, &n.payload), n.run_id));
            }
        }
        Self { tasks }
    }

    fn run_of(&self, key: &str, inputs: &Value) -> Option<RunId> {
        self.tasks
            .get(key)?
            .iter()
            .find(|(held, _)| held == inputs)
            .map(|(_, run)| *run)
    }
}

impl Planner<'_> {
    /// The inputs of a planned task, as [`inputs_of`] reads them from a stored node.
    fn inputs(&self, t: &Task) -> Value {
        if t.kind == kind::WRITE_SCENES {
            // A `generate` plan's scene writers use the default model (`ScenesTask::model`).
            let episode = t.episode.as_ref().map(ToString::to_string);
            let payload =
                json!({ "drama": self.drama.id.as_str(), "episode": episode, "model": null });
            inputs_of(t.kind, &payload)
        } else {
            inputs_of(t.kind, &t.payload)
        }
    }

    /// `chosen` (tasks in plan order) without those `held` holds, except forced ones, those
    /// a kept task needs first (a scene writer's expansion waits for the portraits of its run
    /// as well), and those that need a kept task first. The engine orders tasks within one
    /// run only, so a held task that a kept one needs is made again here rather than letting
    /// its dependent start without it; and a held task that needs a kept one (a storyboard
    /// whose portrait is made again from a new prompt) would run on the product it is being
    /// made again from, or on the old one: media tasks read their references (asset ids)
    /// when they run. Both rules hold at once: a task kept for the one is followed by the
    /// other. Also answers the runs that make what was left out, in plan order.
    pub(super) fn leave_out_held(
        &self,
        chosen: Vec<usize>,
        scope: &Scope,
        force: bool,
        held: &Held,
    ) -> (Vec<usize>, Vec<RunId>) {
        if held.tasks.is_empty() {
            return (chosen, Vec::new());
        }
        let holder = |i: usize| {
            let t = &self.tasks[i];
            if force && self.in_scope(t, scope) {
                return None;
            }
            held.run_of(&t.key, &self.inputs(t))
        };
        let in_plan: HashSet<usize> = chosen.iter().copied().collect();
        let portraits: Vec<usize> = chosen
            .iter()
            .copied()
            .filter(|&i| self.tasks[i].kind == kind::PORTRAIT)
            .collect();
        // What each planned task needs first within the plan, and the other way round.
        let mut needs: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut needed_by: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &chosen {
            let t = &self.tasks[i];
            let mut first: Vec<usize> = t
                .upstream
                .iter()
                .filter_map(|u| self.index.get(u).copied())
                .filter(|j| in_plan.contains(j))
                .collect();
            if t.kind == kind::WRITE_SCENES {
                first.extend(&portraits);
            }
            for &j in &first {
                needed_by.entry(j).or_default().push(i);
            }
            needs.insert(i, first);
        }
        let mut keep: HashSet<usize> = chosen
            .iter()
            .copied()
            .filter(|&i| holder(i).is_none())
            .collect();
        let mut stack: Vec<usize> = keep.iter().copied().collect();
        while let Some(i) = stack.pop() {
            let linked = needs.get(&i).into_iter().chain(needed_by.get(&i)).flatten();
            for &j in linked {
                if keep.insert(j) {
                    stack.push(j);
                }
            }
        }
        let mut makers = Vec::new();
        for &i in &chosen {
            if !keep.contains(&i)
                && let Some(run) = holder(i)
                && !makers.contains(&run)
            {
                makers.push(run);
            }
        }
        let kept = chosen.into_iter().filter(|i| keep.contains(i)).collect();
        (kept, makers)
    }
}
