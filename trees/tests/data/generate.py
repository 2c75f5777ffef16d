#!/usr/bin/env python3
"""Regenerates coffer-trees' test models and onnxruntime reference outputs.

Run from anywhere, in a virtual environment outside the repository:

    python3 -m venv .venv-trees
    .venv-trees/bin/pip install -r trees/tests/data/requirements.txt
    .venv-trees/bin/python trees/tests/data/generate.py

It writes, next to this script, for every case NAME:

  NAME.onnx  the model (a few trees, a few features: a few KB each)
  NAME.ref   input rows and onnxruntime's outputs for them, little-endian:
               8 bytes   magic b"CTREF1\\0\\0"
               4 x u32   n_rows, n_features, n_out, flags (bit 0: classifier)
               f32       rows   [n_rows * n_features]   (NaN and +-inf included)
               i64       labels [n_rows]                (classifiers only)
               f32       scores [n_rows * n_out]        (probabilities or values)

References come from onnxruntime on one thread (intra_op_num_threads=1), so scores are summed
tree by tree in attribute order, as coffer-trees sums them.

Cases: models converted from scikit-learn (skl2onnx), LightGBM and XGBoost (onnxmltools), and
random hand-built ensembles (onnx.helper) that cover every node mode, missing-value tracking,
every aggregate function and post transform, the two-class special cases with 0, 1 or 2 base
values, leaves with 0 or several weights, shared subtrees and the *_as_tensor attributes.
"""

import os
import struct
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
N_ROWS = 160


def session(model_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def write_case(name, model, rows, out_dir=HERE):
    if not isinstance(model, bytes):
        # Converters put a random uuid in the graph name and list opsets in set order; keep the
        # files reproducible.
        model.graph.name = name
        opsets = sorted(model.opset_import, key=lambda o: o.domain)
        del model.opset_import[:]
        model.opset_import.extend(opsets)
    model_bytes = model if isinstance(model, bytes) else model.SerializeToString()
    sess = session(model_bytes)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    outs = sess.run(None, {sess.get_inputs()[0].name: rows})
    labels, scores = None, None
    for meta, val in zip(sess.get_outputs(), outs):
        if meta.type == "tensor(int64)":
            labels = np.asarray(val, dtype=np.int64).reshape(-1)
        else:
            scores = np.asarray(val, dtype=np.float32).reshape(rows.shape[0], -1)
    assert scores is not None, name
    n_rows, n_features = rows.shape
    n_out = scores.shape[1]
    flags = 1 if labels is not None else 0
    with open(os.path.join(out_dir, name + ".onnx"), "wb") as f:
        f.write(model_bytes)
    with open(os.path.join(out_dir, name + ".ref"), "wb") as f:
        f.write(b"CTREF1\0\0")
        f.write(struct.pack("<4I", n_rows, n_features, n_out, flags))
        f.write(rows.astype("<f4").tobytes())
        if labels is not None:
            f.write(labels.astype("<i8").tobytes())
        f.write(scores.astype("<f4").tobytes())
    print(f"{name:40s} rows={n_rows} features={n_features} out={n_out} "
          f"onnx={len(model_bytes)}B")


def rows_with_nan(rng, x, frac):
    x = x.copy()
    mask = rng.random(x.shape) < frac
    x[mask] = np.nan
    return x


# --------------------------------------------------------------------------------------------
# Converted models
# --------------------------------------------------------------------------------------------

def converted_cases():
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    import lightgbm as lgb
    import xgboost as xgb
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat

    rng = np.random.default_rng(20240611)
    nf = 8
    x = rng.normal(size=(600, nf)).astype(np.float32)
    logit = x[:, 0] - 0.7 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + 0.3 * rng.normal(size=600)
    y_bin = (logit > 0).astype(np.int64)
    y_3 = np.digitize(logit, [-0.5, 0.6]).astype(np.int64)
    y_reg = (logit + 0.1 * x[:, 4]).astype(np.float32)
    test = rng.normal(size=(N_ROWS, nf)).astype(np.float32)
    x_nan = rows_with_nan(rng, x, 0.15)
    test_nan = rows_with_nan(rng, test, 0.2)

    def skl(model):
        return convert_sklearn(model, initial_types=[("X", FloatTensorType([None, nf]))],
                               options={id(model): {"zipmap": False}}
                               if hasattr(model, "classes_") else None,
                               target_opset={"": 17, "ai.onnx.ml": 3})

    m = GradientBoostingClassifier(n_estimators=25, max_depth=3, random_state=0).fit(x, y_bin)
    write_case("sk_gbdt_binary", skl(m), test)
    m = GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(x, y_3)
    write_case("sk_gbdt_multiclass3", skl(m), test)
    m = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(x, y_bin)
    write_case("sk_rf_binary", skl(m), test)
    m = RandomForestClassifier(n_estimators=6, max_depth=4, random_state=0).fit(x, y_3)
    write_case("sk_rf_multiclass3", skl(m), test)
    m = GradientBoostingRegressor(n_estimators=25, max_depth=3, random_state=0).fit(x, y_reg)
    write_case("sk_gbdt_regressor", skl(m), test)
    y2 = np.stack([y_reg, x[:, 5] * 2.0], axis=1)
    m = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(x, y2)
    write_case("sk_rf_regressor_2targets", skl(m), test)

    def lgbm(model):
        return convert_lightgbm(model, initial_types=[("X", MlFloat([None, nf]))], zipmap=False,
                                target_opset=15)

    m = lgb.LGBMClassifier(n_estimators=25, num_leaves=8, verbose=-1,
                           random_state=0).fit(x, y_bin)
    write_case("lgbm_binary", lgbm(m), test)
    m = lgb.LGBMClassifier(n_estimators=25, num_leaves=8, verbose=-1,
                           random_state=0).fit(x_nan, y_bin)
    write_case("lgbm_binary_nan", lgbm(m), test_nan)
    m = lgb.LGBMClassifier(n_estimators=8, num_leaves=6, verbose=-1,
                           random_state=0).fit(x_nan, y_3)
    write_case("lgbm_multiclass3_nan", lgbm(m), test_nan)
    m = lgb.LGBMRegressor(n_estimators=25, num_leaves=8, verbose=-1,
                          random_state=0).fit(x_nan, y_reg)
    write_case("lgbm_regressor_nan", lgbm(m), test_nan)

    def xgbm(model):
        return convert_xgboost(model, initial_types=[("X", MlFloat([None, nf]))],
                               target_opset=15)

    m = xgb.XGBClassifier(n_estimators=25, max_depth=3, random_state=0).fit(x, y_bin)
    write_case("xgb_binary", xgbm(m), test)
    m = xgb.XGBClassifier(n_estimators=25, max_depth=3, random_state=0).fit(x_nan, y_bin)
    write_case("xgb_binary_nan", xgbm(m), test_nan)
    m = xgb.XGBClassifier(n_estimators=6, max_depth=3, random_state=0).fit(x_nan, y_3)
    write_case("xgb_multiclass3_nan", xgbm(m), test_nan)
    m = xgb.XGBRegressor(n_estimators=25, max_depth=3, random_state=0).fit(x_nan, y_reg)
    write_case("xgb_regressor_nan", xgbm(m), test_nan)


# --------------------------------------------------------------------------------------------
# Hand-built random ensembles
# --------------------------------------------------------------------------------------------

GRID = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0], dtype=np.float32)
ALL_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


def random_rows(rng, n_rows, nf, nan_frac, extremes=True):
    x = rng.normal(size=(n_rows, nf)).astype(np.float32)
    on_grid = rng.random(x.shape) < 0.45
    x[on_grid] = rng.choice(GRID, size=on_grid.sum())
    if nan_frac > 0:
        x[rng.random(x.shape) < nan_frac] = np.nan
    if extremes:
        special = rng.random(x.shape) < 0.02
        x[special] = rng.choice(np.array([np.inf, -np.inf, -0.0], dtype=np.float32),
                                size=special.sum())
    return x


def random_trees(rng, *, n_trees, max_depth, nf, modes, missing_frac, n_out,
                 weights_per_leaf, positive, class_choices, leaf_values=False, leaf_prob=0.25):
    """Nodes and leaf weights of `n_trees` random trees (attribute lists)."""
    nodes = {k: [] for k in ["treeids", "nodeids", "featureids", "modes", "values",
                             "truenodeids", "falsenodeids", "missing"]}
    w = {k: [] for k in ["treeids", "nodeids", "ids", "weights"]}
    tree_ids = rng.permutation(np.arange(n_trees) * 3 + 2)
    for t in tree_ids:
        # Build the shape first, then number nodes with a random permutation (root first).
        shape = []  # (depth, is_leaf, left_index, right_index)

        def grow(depth):
            idx = len(shape)
            shape.append(None)
            leaf = depth >= max_depth or (depth > 0 and rng.random() < leaf_prob)
            if leaf:
                shape[idx] = (depth, True, -1, -1)
            else:
                a = grow(depth + 1)
                b = grow(depth + 1)
                shape[idx] = (depth, False, a, b)
            return idx

        grow(0)
        ids = rng.permutation(len(shape))
        order = [0] + list(rng.permutation(np.arange(1, len(shape))))
        for i in order:
            depth, leaf, a, b = shape[i]
            nodes["treeids"].append(int(t))
            nodes["nodeids"].append(int(ids[i]))
            if leaf:
                nodes["featureids"].append(int(rng.integers(0, nf)) if rng.random() < 0.3 else 0)
                nodes["modes"].append("LEAF")
                nodes["values"].append(float(rng.normal()) if leaf_values else 0.0)
                nodes["truenodeids"].append(0)
                nodes["falsenodeids"].append(0)
                nodes["missing"].append(0)
                k = weights_per_leaf(rng)
                for _ in range(k):
                    v = float(rng.normal())
                    if positive:
                        v = abs(v) * 0.3
                    w["treeids"].append(int(t))
                    w["nodeids"].append(int(ids[i]))
                    w["ids"].append(int(rng.choice(class_choices)))
                    w["weights"].append(v)
            else:
                nodes["featureids"].append(int(rng.integers(0, nf)))
                nodes["modes"].append(str(rng.choice(modes)))
                thr = float(rng.choice(GRID)) if rng.random() < 0.7 else float(rng.normal())
                nodes["values"].append(thr)
                nodes["truenodeids"].append(int(ids[a]))
                nodes["falsenodeids"].append(int(ids[b]))
                nodes["missing"].append(int(rng.random() < missing_frac))
    return nodes, w


def make_model(op, attrs, nf, outputs, ml_opset=3):
    node = helper.make_node(op, ["X"], [o[0] for o in outputs], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node], "trees",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, nf])],
        [helper.make_tensor_value_info(name, ty, shape) for name, ty, shape in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", ml_opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def node_attrs(nodes, as_tensor=False):
    a = dict(nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"],
             nodes_featureids=nodes["featureids"], nodes_modes=nodes["modes"],
             nodes_truenodeids=nodes["truenodeids"], nodes_falsenodeids=nodes["falsenodeids"],
             nodes_missing_value_tracks_true=nodes["missing"])
    if as_tensor:
        a["nodes_values_as_tensor"] = helper.make_tensor(
            "nodes_values", TensorProto.FLOAT, [len(nodes["values"])], nodes["values"])
    else:
        a["nodes_values"] = nodes["values"]
    return a


def regressor_case(name, seed, *, n_targets, aggregate, post, base, modes, missing_frac=0.0,
                   nan_frac=0.0, n_trees=6, max_depth=4, nf=5, wpl=None, leaf_values=False,
                   as_tensor=False, leaf_prob=0.25):
    rng = np.random.default_rng(seed)
    if wpl is None:
        wpl = (lambda r: 1) if n_targets == 1 else (lambda r: int(r.integers(1, 3)))
    nodes, w = random_trees(rng, n_trees=n_trees, max_depth=max_depth, nf=nf, modes=modes,
                            missing_frac=missing_frac, n_out=n_targets, weights_per_leaf=wpl,
                            positive=False, class_choices=list(range(n_targets)),
                            leaf_values=leaf_values, leaf_prob=leaf_prob)
    attrs = node_attrs(nodes, as_tensor)
    attrs.update(n_targets=n_targets, aggregate_function=aggregate, post_transform=post,
                 target_treeids=w["treeids"], target_nodeids=w["nodeids"],
                 target_ids=w["ids"])
    if as_tensor:
        attrs["target_weights_as_tensor"] = helper.make_tensor(
            "tw", TensorProto.FLOAT, [len(w["weights"])], w["weights"])
    else:
        attrs["target_weights"] = w["weights"]
    if base is not None:
        attrs["base_values"] = [float(v) for v in rng.normal(size=base)]
    model = make_model("TreeEnsembleRegressor", attrs, nf,
                       [("Y", TensorProto.FLOAT, [None, n_targets])])
    write_case(name, model, random_rows(rng, N_ROWS, nf, nan_frac))


def classifier_case(name, seed, *, n_classes, post, base, modes, class_choices, positive=False,
                    labels=None, missing_frac=0.0, nan_frac=0.0, n_trees=6, max_depth=4, nf=5,
                    wpl=None, base_scale=1.0, weight_scale=None):
    rng = np.random.default_rng(seed)
    if wpl is None:
        wpl = lambda r: 1
    nodes, w = random_trees(rng, n_trees=n_trees, max_depth=max_depth, nf=nf, modes=modes,
                            missing_frac=missing_frac, n_out=n_classes, weights_per_leaf=wpl,
                            positive=positive, class_choices=class_choices)
    if weight_scale is not None:
        w["weights"] = [v * weight_scale for v in w["weights"]]
    attrs = node_attrs(nodes)
    attrs.update(post_transform=post, classlabels_int64s=labels or list(range(n_classes)),
                 class_treeids=w["treeids"], class_nodeids=w["nodeids"], class_ids=w["ids"],
                 class_weights=w["weights"])
    if base is not None:
        b = rng.normal(size=base) * base_scale
        if positive:
            b = np.abs(b)
        attrs["base_values"] = [float(v) for v in b]
    model = make_model("TreeEnsembleClassifier", attrs, nf,
                       [("label", TensorProto.INT64, [None]),
                        ("probabilities", TensorProto.FLOAT, [None, n_classes])])
    write_case(name, model, random_rows(rng, N_ROWS, nf, nan_frac))


def handmade_cases():
    leq = ["BRANCH_LEQ"]
    lt = ["BRANCH_LT"]
    ge = ["BRANCH_GTE", "BRANCH_GT"]
    eq = ["BRANCH_EQ", "BRANCH_NEQ"]
    seed = 1000

    # Regressors: every aggregate, one and three targets, base values absent / 1 / full.
    for agg in ["SUM", "AVERAGE", "MIN", "MAX"]:
        for n_targets, base in [(1, None), (1, 1), (3, None), (3, 3)]:
            seed += 1
            modes = [leq, lt, ge, ALL_MODES][seed % 4]
            regressor_case(f"rand_reg_{agg.lower()}_t{n_targets}_b{base or 0}", seed,
                           n_targets=n_targets, aggregate=agg, post="NONE", base=base,
                           modes=modes, missing_frac=0.4, nan_frac=0.1)
    for post in ["LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"]:
        seed += 1
        regressor_case(f"rand_reg_t3_{post.lower()}", seed, n_targets=3, aggregate="SUM",
                       post=post, base=3, modes=ALL_MODES, missing_frac=0.3, nan_frac=0.1,
                       wpl=lambda r: int(r.integers(0, 3)))
    seed += 1
    regressor_case("rand_reg_t1_logistic_ignored", seed, n_targets=1, aggregate="SUM",
                   post="LOGISTIC", base=1, modes=leq)
    seed += 1
    regressor_case("rand_reg_t1_leaf_values", seed, n_targets=1, aggregate="SUM", post="NONE",
                   base=None, modes=leq, leaf_values=True, wpl=lambda r: int(r.integers(0, 3)))
    seed += 1
    regressor_case("rand_reg_t1_as_tensor", seed, n_targets=1, aggregate="SUM", post="NONE",
                   base=None, modes=lt, missing_frac=0.5, nan_frac=0.15, as_tensor=True)
    seed += 1
    regressor_case("rand_reg_deep_lopsided", seed, n_targets=1, aggregate="SUM", post="NONE",
                   base=1, modes=leq, n_trees=5, max_depth=14, nf=6, missing_frac=0.2,
                   nan_frac=0.05, leaf_prob=0.45)
    for modes, tag in [(leq, "leq"), (lt, "lt"), (ge, "ge"), (eq, "eq")]:
        seed += 1
        regressor_case(f"rand_reg_modes_{tag}_missing", seed, n_targets=1, aggregate="SUM",
                       post="NONE", base=None, modes=modes, missing_frac=0.5, nan_frac=0.2,
                       n_trees=12)

    # Two classes: which class ids carry weights, their signs, base values 0 / 1 / 2.
    for ids in [[0], [1], [0, 1]]:
        for positive in [True, False]:
            for base in [None, 1, 2]:
                if base == 1 and len(ids) == 2:
                    continue  # onnxruntime leaves the second probability unwritten there
                for post in ["NONE", "LOGISTIC"]:
                    seed += 1
                    tag = "".join(map(str, ids))
                    classifier_case(
                        f"rand_bin_ids{tag}_{'pos' if positive else 'mixed'}_b{base or 0}_"
                        f"{post.lower()}", seed, n_classes=2, post=post, base=base,
                        modes=[leq, ALL_MODES][seed % 2], class_choices=ids, positive=positive,
                        missing_frac=0.3, nan_frac=0.05, base_scale=0.3)
    for post in ["SOFTMAX", "SOFTMAX_ZERO"]:
        seed += 1
        classifier_case(f"rand_bin_ids01_b2_{post.lower()}", seed, n_classes=2, post=post,
                        base=2, modes=ALL_MODES, class_choices=[0, 1], missing_frac=0.3)
    seed += 1
    classifier_case("rand_bin_labels_3_7", seed, n_classes=2, post="LOGISTIC", base=1,
                    modes=leq, class_choices=[0], labels=[3, 7])
    seed += 1
    classifier_case("rand_bin_labels_3_7_both_ids", seed, n_classes=2, post="NONE", base=2,
                    modes=leq, class_choices=[0, 1], labels=[3, 7])

    # More classes.
    for post in ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"]:
        for base in [None, 4]:
            seed += 1
            classifier_case(f"rand_multi4_{post.lower()}_b{base or 0}", seed, n_classes=4,
                            post=post, base=base, modes=[leq, ALL_MODES][seed % 2],
                            class_choices=[0, 1, 2, 3], missing_frac=0.3, nan_frac=0.05,
                            wpl=lambda r: int(r.integers(1, 4)), labels=[10, 20, 30, 40])
    seed += 1
    classifier_case("rand_multi3_probit", seed, n_classes=3, post="PROBIT", base=3, modes=leq,
                    class_choices=[0, 1, 2], positive=True, base_scale=0.05,
                    weight_scale=0.1)
    seed += 1
    classifier_case("rand_multi3_empty_leaves", seed, n_classes=3, post="SOFTMAX", base=3,
                    modes=ALL_MODES, class_choices=[0, 1, 2], missing_frac=0.5, nan_frac=0.1,
                    wpl=lambda r: int(r.integers(0, 3)))


def shared_subtree_case():
    """LightGBM-style set membership: a chain of BRANCH_EQ nodes whose true branches all lead
    to one shared subtree (a DAG, which onnxruntime accepts)."""
    nf = 3
    # tree 0: n0: x0 == 1 ? n4 : n1 ; n1: x0 == 2 ? n4 : n2 ; n2: x0 == 4 ? n4 : n3(leaf -1)
    #         n4: x1 <= 0 ? n5(leaf 10) : n6(leaf 20)
    nodes = dict(
        nodes_treeids=[0] * 7,
        nodes_nodeids=[0, 1, 2, 3, 4, 5, 6],
        nodes_featureids=[0, 0, 0, 0, 1, 0, 0],
        nodes_modes=["BRANCH_EQ", "BRANCH_EQ", "BRANCH_EQ", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_values=[1.0, 2.0, 4.0, 0.0, 0.0, 0.0, 0.0],
        nodes_truenodeids=[4, 4, 4, 0, 5, 0, 0],
        nodes_falsenodeids=[1, 2, 3, 0, 6, 0, 0],
        nodes_missing_value_tracks_true=[0, 0, 1, 0, 1, 0, 0],
    )
    attrs = dict(nodes, n_targets=1, target_treeids=[0, 0, 0], target_nodeids=[3, 5, 6],
                 target_ids=[0, 0, 0], target_weights=[-1.0, 10.0, 20.0])
    model = make_model("TreeEnsembleRegressor", attrs, nf, [("Y", TensorProto.FLOAT, [None, 1])])
    rng = np.random.default_rng(7)
    x = random_rows(rng, N_ROWS, nf, 0.1)
    x[:, 0] = rng.choice(np.array([0, 1, 2, 3, 4, np.nan], dtype=np.float32), size=N_ROWS)
    write_case("shared_subtree_eq_chain", model, x)


CHAIN_VALUES = np.array([0, 1, 2, 3, 5, 31, 32, 33, 1.5, -1], dtype=np.float32)


def eq_chain_case(name, seed, n_trees=8, nf=3):
    """Trees made of BRANCH_EQ chains (consecutive EQ nodes on one feature through false
    branches, sharing one true child: a DAG), which onnxruntime merges into set-membership
    tests whose missing-value tracking is the first node's. Values mix mergeable integers in
    1..=32 and others."""
    rng = np.random.default_rng(seed)
    nodes = {k: [] for k in ["treeids", "nodeids", "featureids", "modes", "values",
                             "truenodeids", "falsenodeids", "missing"]}
    w = {k: [] for k in ["treeids", "nodeids", "ids", "weights"]}
    for t in range(n_trees):
        recs = []  # per node: [featureid, mode, value, true, false, missing]

        def new(rec):
            recs.append(rec)
            return len(recs) - 1

        def leaf():
            i = new([0, "LEAF", 0.0, 0, 0, 0])
            w["treeids"].append(t)
            w["nodeids"].append(i)
            w["ids"].append(0)
            w["weights"].append(float(rng.normal()))
            return i

        def grow(depth):
            if depth >= 3:
                return leaf()
            if rng.random() < 0.6:
                # A chain of 2..5 EQ nodes on one feature, all true branches to one subtree.
                f = int(rng.integers(0, nf))
                k = int(rng.integers(2, 6))
                head = new(None)
                chain = [head] + [new(None) for _ in range(k - 1)]
                target = grow(depth + 1)
                end = grow(depth + 1)
                for j, c in enumerate(chain):
                    nxt = chain[j + 1] if j + 1 < k else end
                    recs[c] = [f, "BRANCH_EQ", float(rng.choice(CHAIN_VALUES)), target, nxt,
                               int(rng.random() < 0.5)]
                return head
            i = new(None)
            a, b = grow(depth + 1), grow(depth + 1)
            recs[i] = [int(rng.integers(0, nf)), str(rng.choice(["BRANCH_LEQ", "BRANCH_EQ"])),
                       float(rng.choice(CHAIN_VALUES)), a, b, int(rng.random() < 0.5)]
            return i

        root = grow(0)
        assert root == 0
        for i, (f, mode, v, tr, fa, m) in enumerate(recs):
            nodes["treeids"].append(t)
            nodes["nodeids"].append(i)
            nodes["featureids"].append(f)
            nodes["modes"].append(mode)
            nodes["values"].append(v)
            nodes["truenodeids"].append(tr)
            nodes["falsenodeids"].append(fa)
            nodes["missing"].append(m)
    attrs = node_attrs(nodes)
    attrs.update(n_targets=1, target_treeids=w["treeids"], target_nodeids=w["nodeids"],
                 target_ids=w["ids"], target_weights=w["weights"])
    model = make_model("TreeEnsembleRegressor", attrs, nf, [("Y", TensorProto.FLOAT, [None, 1])])
    x = rng.choice(np.concatenate([CHAIN_VALUES, [np.nan, np.nan]]).astype(np.float32),
                   size=(N_ROWS, nf))
    write_case(name, model, x)


def reference_for(model_path, out_dir, n_rows, nan_frac, seed=11):
    """Writes MODEL.onnx (a copy) and MODEL.ref for any float-input model into out_dir, for
    checking a model that is too big to commit: COFFER_TREES_EXTRA_DATA=out_dir cargo test."""
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    nf = session(model_bytes).get_inputs()[0].shape[1]
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n_rows, nf)).astype(np.float32)
    x = rows_with_nan(rng, x, nan_frac)
    name = os.path.splitext(os.path.basename(model_path))[0]
    write_case(name, model_bytes, x, out_dir)


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1:
        if sys.argv[1] != "--reference" or len(sys.argv) not in (4, 6):
            sys.exit("usage: generate.py [--reference MODEL.onnx OUT_DIR [N_ROWS NAN_FRAC]]")
        n_rows, nan_frac = (int(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) == 6 \
            else (1000, 0.05)
        reference_for(sys.argv[2], sys.argv[3], n_rows, nan_frac)
        sys.exit(0)
    for f in os.listdir(HERE):
        if f.endswith(".onnx") or f.endswith(".ref"):
            os.remove(os.path.join(HERE, f))
    converted_cases()
    handmade_cases()
    shared_subtree_case()
    for k in range(4):
        eq_chain_case(f"eq_chains_{k}", 5000 + k)
