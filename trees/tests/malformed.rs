//! Broken, hostile or merely unusual files must give an error, never a panic or an endless walk.
//! Models are written here with a tiny protobuf encoder so each test can break one thing.

use std::path::Path;

use coffer_trees::{Prediction, TreeEnsemble, TreeError};

// ---------------------------------------------------------------------------------------------
// A minimal protobuf writer for ONNX messages.

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(buf, field, 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn put_int(buf: &mut Vec<u8>, field: u32, v: i64) {
    key(buf, field, 0);
    varint(buf, v as u64);
}

#[derive(Clone, Debug)]
enum Attr {
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<&'static str>),
    Str(&'static str),
    Int(i64),
}

fn attribute(name: &str, a: &Attr) -> Vec<u8> {
    let mut b = Vec::new();
    put_bytes(&mut b, 1, name.as_bytes());
    match a {
        Attr::Ints(v) => {
            let mut p = Vec::new();
            v.iter().for_each(|&x| varint(&mut p, x as u64));
            put_bytes(&mut b, 8, &p);
            put_int(&mut b, 20, 7);
        }
        Attr::Floats(v) => {
            let p: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            put_bytes(&mut b, 7, &p);
            put_int(&mut b, 20, 6);
        }
        Attr::Strings(v) => {
            v.iter().for_each(|s| put_bytes(&mut b, 9, s.as_bytes()));
            put_int(&mut b, 20, 8);
        }
        Attr::Str(s) => {
            put_bytes(&mut b, 4, s.as_bytes());
            put_int(&mut b, 20, 3);
        }
        Attr::Int(i) => {
            put_int(&mut b, 3, *i);
            put_int(&mut b, 20, 2);
        }
    }
    b
}

struct NodeSpec {
    op: &'static str,
    domain: &'static str,
    inputs: Vec<&'static str>,
    outputs: Vec<&'static str>,
    attrs: Vec<(&'static str, Attr)>,
}

fn node(n: &NodeSpec) -> Vec<u8> {
    let mut b = Vec::new();
    n.inputs
        .iter()
        .for_each(|s| put_bytes(&mut b, 1, s.as_bytes()));
    n.outputs
        .iter()
        .for_each(|s| put_bytes(&mut b, 2, s.as_bytes()));
    put_bytes(&mut b, 4, n.op.as_bytes());
    for (name, a) in &n.attrs {
        put_bytes(&mut b, 5, &attribute(name, a));
    }
    put_bytes(&mut b, 7, n.domain.as_bytes());
    b
}

/// ValueInfoProto of a tensor with element type `elem` and dims (`-1` for symbolic).
fn value_info(name: &str, elem: i64, dims: &[i64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        if d >= 0 {
            put_int(&mut dim, 1, d);
        } else {
            put_bytes(&mut dim, 2, b"N");
        }
        put_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    put_int(&mut tensor, 1, elem);
    put_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    put_bytes(&mut ty, 1, &tensor);
    let mut b = Vec::new();
    put_bytes(&mut b, 1, name.as_bytes());
    put_bytes(&mut b, 2, &ty);
    b
}

struct ModelSpec {
    nodes: Vec<NodeSpec>,
    input_elem: i64,
    n_features: i64,
    outputs: Vec<(&'static str, i64)>,
}

fn model(m: &ModelSpec) -> Vec<u8> {
    let mut g = Vec::new();
    for n in &m.nodes {
        put_bytes(&mut g, 1, &node(n));
    }
    put_bytes(
        &mut g,
        11,
        &value_info("X", m.input_elem, &[-1, m.n_features]),
    );
    for (name, elem) in &m.outputs {
        put_bytes(&mut g, 12, &value_info(name, *elem, &[-1]));
    }
    let mut b = Vec::new();
    put_int(&mut b, 1, 8);
    put_bytes(&mut b, 7, &g);
    b
}

/// A valid regressor: tree 0 is `x0 <= 0.5 ? 1.0 : (x1 <= 2 ? 2.0 : 3.0)`, tree 1 is a leaf 10.
fn regressor_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("n_targets", Attr::Int(1)),
        ("nodes_treeids", Attr::Ints(vec![0, 0, 0, 0, 0, 1])),
        ("nodes_nodeids", Attr::Ints(vec![0, 1, 2, 3, 4, 0])),
        ("nodes_featureids", Attr::Ints(vec![0, 0, 1, 0, 0, 0])),
        (
            "nodes_modes",
            Attr::Strings(vec![
                "BRANCH_LEQ",
                "LEAF",
                "BRANCH_LEQ",
                "LEAF",
                "LEAF",
                "LEAF",
            ]),
        ),
        (
            "nodes_values",
            Attr::Floats(vec![0.5, 0.0, 2.0, 0.0, 0.0, 0.0]),
        ),
        ("nodes_truenodeids", Attr::Ints(vec![1, 0, 3, 0, 0, 0])),
        ("nodes_falsenodeids", Attr::Ints(vec![2, 0, 4, 0, 0, 0])),
        ("target_treeids", Attr::Ints(vec![0, 0, 0, 1])),
        ("target_nodeids", Attr::Ints(vec![1, 3, 4, 0])),
        ("target_ids", Attr::Ints(vec![0, 0, 0, 0])),
        ("target_weights", Attr::Floats(vec![1.0, 2.0, 3.0, 10.0])),
    ]
}

fn tree_node(op: &'static str, attrs: Vec<(&'static str, Attr)>) -> NodeSpec {
    NodeSpec {
        op,
        domain: "ai.onnx.ml",
        inputs: vec!["X"],
        outputs: if op == "TreeEnsembleClassifier" {
            vec!["label", "probabilities"]
        } else {
            vec!["Y"]
        },
        attrs,
    }
}

fn regressor_with(attrs: Vec<(&'static str, Attr)>) -> Vec<u8> {
    model(&ModelSpec {
        nodes: vec![tree_node("TreeEnsembleRegressor", attrs)],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("Y", 1)],
    })
}

/// The valid regressor with one attribute replaced (or added).
fn regressor_replacing(name: &'static str, value: Attr) -> Vec<u8> {
    let mut attrs: Vec<_> = regressor_attrs()
        .into_iter()
        .filter(|(n, _)| *n != name)
        .collect();
    attrs.push((name, value));
    regressor_with(attrs)
}

fn load(bytes: &[u8]) -> Result<TreeEnsemble, TreeError> {
    TreeEnsemble::from_onnx_bytes(bytes)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_hand_written_model_is_valid_and_evaluates() {
    let m = load(&regressor_with(regressor_attrs())).unwrap();
    assert_eq!(m.n_features(), 2);
    assert_eq!(m.n_trees(), 2);
    let rows = [0.0, 0.0, 1.0, 1.0, 1.0, 3.0, f32::NAN, 0.0];
    let Prediction::Regressor { values } = m.predict(&rows, 4, 1).unwrap() else {
        panic!("not a regressor")
    };
    // NaN fails `<=` and no node tracks missing values: false branch.
    assert_eq!(values, vec![11.0, 12.0, 13.0, 12.0]);
}

#[test]
fn truncated_files_are_errors() {
    let good = regressor_with(regressor_attrs());
    for len in 0..good.len() {
        // Some prefixes are valid protobuf (a message cut between fields); none may panic.
        let _ = load(&good[..len]);
    }
    let real =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sk_gbdt_binary.onnx"))
            .unwrap();
    let mut errors = 0;
    for len in (0..real.len()).step_by(7) {
        if load(&real[..len]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0);
    assert!(load(&real[..real.len() / 2]).is_err());
    assert!(matches!(load(b""), Err(TreeError::MissingGraph)));
    assert!(matches!(load(&[0xff; 16]), Err(TreeError::Decode(_))));
}

#[test]
fn random_corruption_never_panics() {
    let real = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lgbm_binary_nan.onnx"),
    )
    .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut loaded = 0;
    for _ in 0..3000 {
        let mut b = real.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        if let Ok(m) = load(&b) {
            loaded += 1;
            let rows = vec![0.25f32; 3 * m.n_features()];
            let _ = m.predict(&rows, 3, 2).unwrap();
        }
    }
    eprintln!("{loaded} of 3000 corrupted files still loaded");
}

#[test]
fn graphs_that_are_not_a_lone_tree_ensemble_are_not_applicable() {
    // Two tree nodes.
    let two = model(&ModelSpec {
        nodes: vec![
            tree_node("TreeEnsembleRegressor", regressor_attrs()),
            NodeSpec {
                outputs: vec!["Y2"],
                ..tree_node("TreeEnsembleRegressor", regressor_attrs())
            },
        ],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("Y", 1), ("Y2", 1)],
    });
    match load(&two) {
        Err(e @ TreeError::NotALoneTreeEnsemble { .. }) => {
            assert!(e.is_not_applicable());
            let TreeError::NotALoneTreeEnsemble { ops, .. } = e else {
                unreachable!()
            };
            assert_eq!(ops, vec!["ai.onnx.ml:TreeEnsembleRegressor"; 2]);
        }
        other => panic!("{other:?}"),
    }

    // A tree followed by a real computation.
    let softmax = model(&ModelSpec {
        nodes: vec![
            tree_node("TreeEnsembleRegressor", regressor_attrs()),
            NodeSpec {
                op: "Softmax",
                domain: "",
                inputs: vec!["Y"],
                outputs: vec!["Z"],
                attrs: vec![],
            },
        ],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("Z", 1)],
    });
    assert!(matches!(
        load(&softmax),
        Err(TreeError::NotALoneTreeEnsemble { .. })
    ));

    // No tree at all.
    let add = model(&ModelSpec {
        nodes: vec![NodeSpec {
            op: "Add",
            domain: "",
            inputs: vec!["X", "X"],
            outputs: vec!["Y"],
            attrs: vec![],
        }],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("Y", 1)],
    });
    match load(&add) {
        Err(TreeError::NotALoneTreeEnsemble { ops, .. }) => assert_eq!(ops, vec!["Add"]),
        other => panic!("{other:?}"),
    }

    // No-op nodes after the tree are fine.
    let identity = model(&ModelSpec {
        nodes: vec![
            tree_node("TreeEnsembleRegressor", regressor_attrs()),
            NodeSpec {
                op: "Identity",
                domain: "",
                inputs: vec!["Y"],
                outputs: vec!["out"],
                attrs: vec![],
            },
        ],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("out", 1)],
    });
    assert_eq!(load(&identity).unwrap().output_names(), vec!["out"]);

    // The opset-5 TreeEnsemble operator, a double input, string labels: not applicable.
    let v5 = model(&ModelSpec {
        nodes: vec![tree_node("TreeEnsemble", vec![])],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("Y", 1)],
    });
    assert!(matches!(load(&v5), Err(TreeError::Unsupported(_))));
    let double = model(&ModelSpec {
        nodes: vec![tree_node("TreeEnsembleRegressor", regressor_attrs())],
        input_elem: 11,
        n_features: 2,
        outputs: vec![("Y", 1)],
    });
    assert!(matches!(load(&double), Err(TreeError::Unsupported(_))));
    let strings = model(&ModelSpec {
        nodes: vec![tree_node(
            "TreeEnsembleClassifier",
            regressor_attrs()
                .into_iter()
                .filter(|(n, _)| n.starts_with("nodes_"))
                .chain([("classlabels_strings", Attr::Strings(vec!["no", "yes"]))])
                .collect(),
        )],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("label", 8), ("probabilities", 1)],
    });
    let e = load(&strings).unwrap_err();
    assert!(
        matches!(e, TreeError::Unsupported(_)) && e.is_not_applicable(),
        "{e}"
    );
}

fn expect_invalid(bytes: &[u8], what: &str) {
    match load(bytes) {
        Err(e @ (TreeError::InvalidTree(_) | TreeError::InvalidAttribute { .. })) => {
            assert!(!e.is_not_applicable());
            eprintln!("{what}: {e}");
        }
        Err(e) => panic!("{what}: unexpected error kind {e:?}"),
        Ok(_) => panic!("{what}: loaded"),
    }
}

#[test]
fn broken_trees_are_errors() {
    expect_invalid(
        &regressor_replacing("nodes_truenodeids", Attr::Ints(vec![1, 0, 9, 0, 0, 0])),
        "child id out of range",
    );
    expect_invalid(
        &regressor_replacing("nodes_falsenodeids", Attr::Ints(vec![2, 0, -1, 0, 0, 0])),
        "negative child id",
    );
    expect_invalid(
        &regressor_replacing("nodes_truenodeids", Attr::Ints(vec![1, 0, 0, 0, 0, 0])),
        "cycle back to the root",
    );
    expect_invalid(
        &regressor_replacing("nodes_falsenodeids", Attr::Ints(vec![2, 0, 2, 0, 0, 0])),
        "node is its own child",
    );
    expect_invalid(
        &regressor_replacing("nodes_featureids", Attr::Ints(vec![0, 0, 2, 0, 0, 0])),
        "feature beyond the declared input",
    );
    expect_invalid(
        &regressor_replacing("nodes_featureids", Attr::Ints(vec![-3, 0, 1, 0, 0, 0])),
        "negative feature",
    );
    expect_invalid(
        &regressor_replacing("nodes_nodeids", Attr::Ints(vec![0, 1, 1, 3, 4, 0])),
        "duplicate node id",
    );
    expect_invalid(
        &regressor_replacing("nodes_treeids", Attr::Ints(vec![0, 0, 1, 0, 0, 1])),
        "tree split in two runs",
    );
    expect_invalid(
        &regressor_replacing("nodes_values", Attr::Floats(vec![0.5, 0.0, 2.0])),
        "short nodes_values",
    );
    expect_invalid(
        &regressor_replacing(
            "nodes_modes",
            Attr::Strings(vec![
                "BRANCH_LEQ",
                "LEAF",
                "BRANCH_SOMETIMES",
                "LEAF",
                "LEAF",
                "LEAF",
            ]),
        ),
        "unknown mode",
    );
    expect_invalid(
        &regressor_replacing("target_ids", Attr::Ints(vec![0, 0, 1, 0])),
        "target id out of range",
    );
    expect_invalid(
        &regressor_replacing("target_nodeids", Attr::Ints(vec![1, 3, 7, 0])),
        "weight on a missing node",
    );
    expect_invalid(
        &regressor_replacing("target_weights", Attr::Floats(vec![1.0])),
        "short target_weights",
    );
    expect_invalid(
        &regressor_replacing(
            "nodes_missing_value_tracks_true",
            Attr::Ints(vec![0, 0, 2, 0, 0, 0]),
        ),
        "missing flag 2",
    );
    expect_invalid(
        &regressor_replacing("n_targets", Attr::Int(0)),
        "zero targets",
    );
    expect_invalid(
        &regressor_replacing("aggregate_function", Attr::Str("MEDIAN")),
        "unknown aggregate",
    );
    expect_invalid(
        &regressor_replacing("nodes_values", Attr::Ints(vec![1, 2, 3, 4, 5, 6])),
        "attribute of the wrong type",
    );
    // A two-node cycle below the root: root -> 1 -> 2 -> 1.
    let attrs = vec![
        ("n_targets", Attr::Int(1)),
        ("nodes_treeids", Attr::Ints(vec![0, 0, 0, 0])),
        ("nodes_nodeids", Attr::Ints(vec![0, 1, 2, 3])),
        ("nodes_featureids", Attr::Ints(vec![0, 0, 1, 0])),
        (
            "nodes_modes",
            Attr::Strings(vec!["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LT", "LEAF"]),
        ),
        ("nodes_values", Attr::Floats(vec![0.0; 4])),
        ("nodes_truenodeids", Attr::Ints(vec![1, 2, 1, 0])),
        ("nodes_falsenodeids", Attr::Ints(vec![3, 3, 3, 0])),
        ("target_treeids", Attr::Ints(vec![0])),
        ("target_nodeids", Attr::Ints(vec![3])),
        ("target_ids", Attr::Ints(vec![0])),
        ("target_weights", Attr::Floats(vec![1.0])),
    ];
    expect_invalid(&regressor_with(attrs), "cycle below the root");
}

#[test]
fn class_ids_outside_the_labels_are_errors() {
    let mut attrs: Vec<(&'static str, Attr)> = regressor_attrs()
        .into_iter()
        .filter(|(n, _)| n.starts_with("nodes_"))
        .collect();
    attrs.extend([
        ("classlabels_int64s", Attr::Ints(vec![0, 1])),
        ("class_treeids", Attr::Ints(vec![0, 0])),
        ("class_nodeids", Attr::Ints(vec![1, 3])),
        ("class_ids", Attr::Ints(vec![0, 2])),
        ("class_weights", Attr::Floats(vec![0.5, 0.5])),
    ]);
    let bytes = model(&ModelSpec {
        nodes: vec![tree_node("TreeEnsembleClassifier", attrs)],
        input_elem: 1,
        n_features: 2,
        outputs: vec![("label", 7), ("probabilities", 1)],
    });
    expect_invalid(&bytes, "class id 2 of 2 classes");
}

#[test]
fn a_very_deep_tree_loads_and_evaluates_without_recursion() {
    // A chain of 200_000 nodes: node i tests x0 <= i and goes on to i + 1 when false.
    let n: i64 = 200_000;
    let mut ids = Vec::new();
    let mut modes = Vec::new();
    let mut values = Vec::new();
    let mut trues = Vec::new();
    let mut falses = Vec::new();
    for i in 0..n {
        ids.push(i);
        if i == n - 1 {
            modes.push("LEAF");
            trues.push(0);
            falses.push(0);
        } else {
            modes.push("BRANCH_LT");
            trues.push(n - 1);
            falses.push(i + 1);
        }
        values.push(i as f32);
    }
    let attrs = vec![
        ("n_targets", Attr::Int(1)),
        ("nodes_treeids", Attr::Ints(vec![0; n as usize])),
        ("nodes_nodeids", Attr::Ints(ids)),
        ("nodes_featureids", Attr::Ints(vec![0; n as usize])),
        ("nodes_modes", Attr::Strings(modes)),
        ("nodes_values", Attr::Floats(values)),
        ("nodes_truenodeids", Attr::Ints(trues)),
        ("nodes_falsenodeids", Attr::Ints(falses)),
        ("target_treeids", Attr::Ints(vec![0])),
        ("target_nodeids", Attr::Ints(vec![n - 1])),
        ("target_ids", Attr::Ints(vec![0])),
        ("target_weights", Attr::Floats(vec![7.0])),
    ];
    let m = load(&regressor_with(attrs)).unwrap();
    let Prediction::Regressor { values } = m.predict(&[1e9, 0.0, 5.5, 0.0], 2, 1).unwrap() else {
        panic!()
    };
    assert_eq!(values, vec![7.0, 7.0]);
}

#[test]
fn wrong_input_length_is_an_error() {
    let m = load(&regressor_with(regressor_attrs())).unwrap();
    assert!(matches!(
        m.predict(&[1.0, 2.0, 3.0], 2, 1),
        Err(TreeError::InputShape {
            n_rows: 2,
            n_features: 2,
            got: 3
        })
    ));
    assert!(matches!(
        m.predict(&[], usize::MAX, 1),
        Err(TreeError::InputShape { .. })
    ));
    // Zero rows is fine.
    assert_eq!(
        m.predict(&[], 0, 4).unwrap(),
        Prediction::Regressor { values: vec![] }
    );
}

#[test]
fn io_errors_name_the_path() {
    let e = TreeEnsemble::from_onnx_path("/nonexistent/model.onnx").unwrap_err();
    assert!(matches!(e, TreeError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/model.onnx"));
}
