//! Validation and resolution of graphs.

use serde_json::json;

use super::*;

fn graph(nodes: Vec<NodeSpec>) -> Graph {
    let mut g = Graph::new(RunSpec::new("test", Uuid::nil()));
    for n in nodes {
        g.add(n);
    }
    g
}

fn task(key: &str) -> NodeSpec {
    NodeSpec::task(key, "noop", json!({}))
}

#[test]
fn a_valid_hierarchy_resolves_prerequisites_first() {
    let g = graph(vec![
        task("clip").parent("ep1").after(["board"]),
        NodeSpec::group("ep1", "episode"),
        task("board").parent("ep1"),
    ]);
    g.validate().unwrap();
    let r = resolve(&g.nodes, &[], &NoExistingNodes).unwrap();
    let pos = |i| r.order.iter().position(|&x| x == i).unwrap();
    assert!(pos(1) < pos(0) && pos(1) < pos(2) && pos(2) < pos(0));
    assert!(
        r.rank[2] > r.rank[0],
        "a prerequisite ranks above its dependent"
    );
}

#[test]
fn cycles_are_reported_with_their_path() {
    let g = graph(vec![
        task("a").after(["c"]),
        task("b").after(["a"]),
        task("c").after(["b"]),
        task("d"),
    ]);
    match g.validate() {
        Err(GraphError::Cycle { path }) => {
            assert_eq!(path.first(), path.last());
            assert_eq!(path.len(), 4, "{path:?}");
            for k in ["a", "b", "c"] {
                assert!(path.contains(&k.to_owned()));
            }
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert!(matches!(
        graph(vec![task("a").after(["a"])]).validate(),
        Err(GraphError::Cycle { .. })
    ));
}

#[test]
fn bad_references_name_the_node() {
    assert_eq!(
        graph(vec![task("a").after(["ghost"])]).validate(),
        Err(GraphError::UnknownDependency {
            node: "a".into(),
            dependency: "ghost".into()
        })
    );
    assert_eq!(
        graph(vec![task("a"), task("a")]).validate(),
        Err(GraphError::DuplicateKey("a".into()))
    );
    assert!(matches!(
        graph(vec![task("a"), task("b").parent("a")]).validate(),
        Err(GraphError::ParentNotGroup { .. })
    ));
    assert!(matches!(
        graph(vec![NodeSpec::group("g", "grp"), task("b").after(["g"])]).validate(),
        Err(GraphError::GroupDependency { .. })
    ));
    assert!(matches!(
        graph(vec![task("b").parent("nowhere")]).validate(),
        Err(GraphError::UnknownParent { .. })
    ));
}

#[test]
fn fields_and_names_are_checked() {
    assert!(matches!(
        graph(vec![task("")]).validate(),
        Err(GraphError::InvalidName { what: "key", .. })
    ));
    assert!(matches!(
        graph(vec![NodeSpec::task("a", "bad kind", json!(1))]).validate(),
        Err(GraphError::InvalidName { what: "kind", .. })
    ));
    assert!(matches!(
        graph(vec![task("a").max_attempts(0)]).validate(),
        Err(GraphError::InvalidField {
            field: "max_attempts",
            ..
        })
    ));
    assert!(matches!(
        graph(vec![task("a").cost(-1)]).validate(),
        Err(GraphError::InvalidField { field: "cost", .. })
    ));
    let big = json!({"x": "y".repeat(MAX_PAYLOAD_BYTES)});
    assert!(matches!(
        graph(vec![NodeSpec::task("a", "k", big)]).validate(),
        Err(GraphError::InvalidField {
            field: "payload",
            ..
        })
    ));
    let mut deep = vec![NodeSpec::group("g0", "grp")];
    for i in 1..=MAX_DEPTH {
        deep.push(NodeSpec::group(format!("g{i}"), "grp").parent(format!("g{}", i - 1)));
    }
    assert!(matches!(
        graph(deep).validate(),
        Err(GraphError::TooDeep { .. })
    ));
}

#[test]
fn parent_loops_are_cycles() {
    let g = graph(vec![
        NodeSpec::group("x", "grp").parent("y"),
        NodeSpec::group("y", "grp").parent("x"),
    ]);
    assert!(matches!(g.validate(), Err(GraphError::Cycle { .. })));
}

struct Existing(Vec<(&'static str, NodeType, Vec<usize>)>);

impl ExistingNodes for Existing {
    fn get(&self, key: &str) -> Option<ExistingNode> {
        self.0
            .iter()
            .position(|(k, _, _)| *k == key)
            .map(|index| ExistingNode {
                index,
                node_type: self.0[index].1,
                depth: 1,
            })
    }
    fn prerequisites(&self, index: usize) -> Vec<usize> {
        self.0[index].2.clone()
    }
    fn key(&self, index: usize) -> String {
        self.0[index].0.to_owned()
    }
}

#[test]
fn expansions_may_not_close_cycles_through_existing_nodes() {
    // stitch (existing) depends on write (existing); adding clip with stitch -> clip is
    // fine, but a clip that itself depends on stitch closes a cycle.
    let run = Existing(vec![
        ("write", NodeType::Task, vec![]),
        ("stitch", NodeType::Task, vec![0]),
    ]);
    let ok = resolve(
        &[task("clip").after(["write"])],
        &[("stitch".into(), "clip".into())],
        &run,
    )
    .unwrap();
    assert_eq!(ok.edges, vec![(1, 0)]);
    let bad = resolve(
        &[task("clip").after(["stitch"])],
        &[("stitch".into(), "clip".into())],
        &run,
    );
    assert!(matches!(bad, Err(GraphError::Cycle { .. })), "{bad:?}");
    assert_eq!(
        resolve(&[task("write")], &[], &run).unwrap_err(),
        GraphError::DuplicateKey("write".into())
    );
}
