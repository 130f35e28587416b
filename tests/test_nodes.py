"""Node classification on rows recorded by edgemoe-profile (patch 0001-node-timing) at llama.cpp
f7cd13301, CPU, -t 2, one decode step each:

- olmoe_tiny_top2.jsonl: olmoe, hidden 256, 2 layers, 8 experts top-2, expert FFN 256, F16
- olmoe_tiny_top4.jsonl: same with top-4 (exercises the unnamed aggregation ADDs)
- llama_tiny.jsonl:      llama, hidden 256, 2 layers, FFN 512, 4 heads / 2 KV heads, F16

The tiny models are throwaway random-weight GGUFs with the gpt-neox vocabulary (50432 tokens), so
the LM head dominates their time; the tests check classification, not the shares of real models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgemoe.stats import bootstrap_ci

from edgemoe import nodes as N

FIX = Path(__file__).parent / "fixtures" / "nodes"


@pytest.fixture(scope="module")
def olmoe():
    return N.read_rows(FIX / "olmoe_tiny_top2.jsonl")


@pytest.fixture(scope="module")
def olmoe4():
    return N.read_rows(FIX / "olmoe_tiny_top4.jsonl")


@pytest.fixture(scope="module")
def llama():
    return N.read_rows(FIX / "llama_tiny.jsonl")


def cls_of(df, name, op=None, src0=None):
    d = df[df["name"] == name]
    if op is not None:
        d = d[d["op"] == op]
    if src0 is not None:
        d = d[d["src0"] == src0]
    assert len(d) >= 1, (name, op, src0)
    got = set(d["cls"])
    assert len(got) == 1, (name, op, src0, got)
    return got.pop()


def test_every_node_classified_once(olmoe, olmoe4, llama):
    for df, n in ((olmoe, 100), (olmoe4, 108), (llama, 70)):
        assert len(df) == n
        assert df["cls"].isin(N.CLASSES).all()
        # shares over all classes add up: nothing dropped
        sh = N.class_shares(df)
        assert np.allclose(sh.sum(axis=1), 1.0)
        assert int(N.class_ns(df).to_numpy().sum()) == int(df["ns"].sum())


@pytest.mark.parametrize(
    "name,op,src0,cls",
    [
        ("ffn_moe_logits-0", "MUL_MAT", None, "routing"),
        ("ffn_moe_probs-0", "SOFT_MAX", None, "routing"),
        ("ffn_moe_argsort-1", "ARGSORT", None, "routing"),
        ("ffn_moe_topk-0", "VIEW", None, "routing"),
        ("ffn_moe_probs-0 (reshaped)", "RESHAPE", None, "routing"),
        ("ffn_moe_weights-1", "GET_ROWS", None, "routing"),
        ("ffn_moe_up-0", "MUL_MAT_ID", None, "expert"),
        ("ffn_moe_gate-1", "MUL_MAT_ID", None, "expert"),
        ("ffn_moe_silu-0", "SILU", None, "expert"),
        ("ffn_moe_gate_par-0", "MUL", None, "expert"),
        ("ffn_moe_down-1", "MUL_MAT_ID", None, "expert"),
        ("node_43", "MUL", "ffn_moe_down-0", "expert"),  # unnamed: experts x weights
        (" (view)", "VIEW", "node_43", "expert"),  # unnamed aggregation views
        ("ffn_moe_out-0", "ADD", None, "expert"),
        ("Qcur-0", "MUL_MAT", None, "attention"),
        ("norm-0", "RMS_NORM", "Qcur-0", "attention"),  # q norm, same name as the layer norms
        ("norm-1", "RMS_NORM", "Kcur-1", "attention"),  # k norm
        ("norm-0", "RMS_NORM", "inp_embd", "norm"),
        ("norm-0", "RMS_NORM", "ffn_inp-0", "norm"),
        ("Qcur_normed-0", "MUL", None, "attention"),
        ("Qcur_rope-1", "ROPE", None, "attention"),
        ("k_cache_view-0 (copy of Kcur_rope-0)", "CPY", None, "attention"),
        ("kq-0", "MUL_MAT", None, "attention"),
        ("kq_soft_max_ext-1", "SOFT_MAX", None, "attention"),
        ("kqv-0", "MUL_MAT", None, "attention"),
        ("kqv_merged_cont-0", "CONT", None, "attention"),
        ("kqv_out-1", "MUL_MAT", None, "attention"),
        ("kqv_merged-0", "PERMUTE", None, "noop"),
        ("k_cache_view-0", "VIEW", None, "noop"),
        ("Vcur-0 (transposed)", "TRANSPOSE", None, "noop"),
        ("ffn_norm-0 (reshaped)", "RESHAPE", None, "noop"),
        ("attn_norm-1", "MUL", None, "norm"),
        ("ffn_norm-0", "MUL", None, "norm"),
        ("result_norm", "MUL", None, "norm"),
        ("result_output", "MUL_MAT", None, "lm_head"),
        ("inp_embd", "GET_ROWS", None, "other"),
        ("ffn_inp-0", "ADD", None, "other"),
        ("l_out-1", "ADD", None, "other"),
        ("node_75", "GET_ROWS", "kqv_out-1", "other"),
    ],
)
def test_olmoe_node_classes(olmoe, name, op, src0, cls):
    assert cls_of(olmoe, name, op, src0) == cls


def test_olmoe_top4_aggregation_adds_are_expert(olmoe4):
    adds = olmoe4[(olmoe4["op"] == "ADD") & olmoe4["name"].str.match(r"^node_\d+$")]
    assert len(adds) == 4  # k-2 = 2 unnamed ADDs per layer, 2 layers
    assert (adds["cls"] == "expert").all()
    views = olmoe4[olmoe4["name"] == " (view)"]
    assert len(views) == 8 and (views["cls"] == "expert").all()
    # the residual ADD over the inp_out_ids selections (also unnamed sources) stays "other"
    assert cls_of(olmoe4, "ffn_inp-1", "ADD") == "other"


@pytest.mark.parametrize(
    "name,op,cls",
    [
        ("Qcur-0", "MUL_MAT", "attention"),
        ("Qcur-0", "ROPE", "attention"),  # Qcur reused for the RoPE output
        ("Kcur-1", "ROPE", "attention"),
        ("Qcur-0 (reshaped)", "RESHAPE", "noop"),
        ("ffn_gate-0", "MUL_MAT", "dense_ffn"),
        ("ffn_silu-0", "SILU", "dense_ffn"),
        ("ffn_up-1", "MUL_MAT", "dense_ffn"),
        ("ffn_gate_par-1", "MUL", "dense_ffn"),
        ("ffn_out-0", "MUL_MAT", "dense_ffn"),  # dense llama's down projection is named ffn_out
        ("result_output", "MUL_MAT", "lm_head"),
    ],
)
def test_llama_node_classes(llama, name, op, cls):
    assert cls_of(llama, name, op) == cls


def test_dense_has_no_moe_and_moe_has_no_dense(olmoe, llama):
    assert not llama["cls"].isin(["routing", "expert"]).any()
    assert not olmoe["cls"].isin(["dense_ffn"]).any()
    rs = N.routing_share(llama)
    assert np.isnan(rs["mean"]) and rs["n_steps"] == 0


def test_other_share_is_small(olmoe, olmoe4, llama):
    for df in (olmoe, olmoe4, llama):
        assert N.mean_shares(df)["other"] < 0.05
        # and "other" holds only the known leftovers
        names = {N.base_name(n) for n in df.loc[df["cls"] == "other", "name"]}
        assert names <= {"inp_embd", "ffn_inp", "l_out", "node_75", "node_76", "node_79", "node_80",
                         "node_56", "node_57"}, names


def test_ffn_out_add_is_residual_not_dense():
    # other architectures keep the name ffn_out on the residual ADD
    assert N.classify_node("ffn_out-3", "ADD", "ffn_moe_out-3", "ffn_inp-3")[0] == "other"
    assert N.classify_node("ffn_out-3", "MUL_MAT", "blk.3.ffn_down.weight", "ffn_gate_par-3")[0] == "dense_ffn"


def test_unknown_node_goes_to_other_not_dropped():
    assert N.classify_node("mystery-0", "SCALE", "x", None)[0] == "other"
    assert N.classify_node("node_9", "ADD", "a", "b", known={"a": "attention", "b": "other"})[0] == "other"


def test_layers(olmoe):
    assert set(olmoe["layer"].dropna().astype(int)) == {0, 1}
    assert olmoe.loc[olmoe["name"] == "ffn_moe_up-1", "layer"].iloc[0] == 1
    # views of the unnamed weighted MUL inherit its layer through the source
    v = olmoe[(olmoe["name"] == " (view)") & (olmoe["src0"] == "node_43")]
    assert (v["layer"] == 0).all()
    ld = N.layer_detail(olmoe)
    assert set(ld.columns) >= {"layer", "cls", "ns", "share", "routing_share"}
    assert np.isclose(ld["share"].sum(), 1.0)
    r0 = ld[(ld["layer"] == 0)]["routing_share"].dropna().unique()
    assert len(r0) == 1 and 0 < r0[0] < 1


def _constructed(steps):
    """rows with given (routing_ns, expert_ns, attention_ns) per step"""
    recs = []
    for s, (r, e, a) in enumerate(steps):
        recs += [
            {"step": s, "graph": 0, "node": 0, "name": "ffn_moe_logits-0", "op": "MUL_MAT",
             "src0": "blk.0.ffn_gate_inp.weight", "src1": "ffn_norm-0", "ns": r},
            {"step": s, "graph": 0, "node": 1, "name": "ffn_moe_down-0", "op": "MUL_MAT_ID",
             "src0": "blk.0.ffn_down_exps.weight", "src1": "ffn_moe_gate_par-0", "ns": e},
            {"step": s, "graph": 0, "node": 2, "name": "kq-0", "op": "MUL_MAT", "src0": "k-0", "src1": "q-0", "ns": a},
        ]
    return N.classify_rows(pd.DataFrame.from_records(recs))


def test_routing_share_math():
    df = _constructed([(10, 90, 1000), (20, 80, 5), (30, 70, 0)])
    rs = N.routing_share(df, n_boot=2000, seed=1)
    assert np.allclose(rs["per_step"], [0.1, 0.2, 0.3])  # attention does not enter the ratio
    assert rs["mean"] == pytest.approx(0.2)
    assert rs["median"] == pytest.approx(0.2)
    assert 0.1 <= rs["ci_low"] <= 0.2 <= rs["ci_high"] <= 0.3
    assert rs["n_steps"] == 3
    rm = N.routing_share(df, n_boot=2000, seed=1, stat="median")
    assert rm["stat"] == "median" and rm["median"] == pytest.approx(0.2)
    assert 0.1 <= rm["ci_low"] <= 0.2 <= rm["ci_high"] <= 0.3
    # constant share: degenerate interval
    rs2 = N.routing_share(_constructed([(1, 3, 7)] * 5))
    assert rs2["ci_low"] == pytest.approx(0.25) and rs2["ci_high"] == pytest.approx(0.25)


def test_median_resists_a_spike():
    # one step where a descheduled thread inflated one expert node 100x
    df = _constructed([(10, 90, 100)] * 6 + [(10, 9000, 100)])
    assert N.routing_share(df, stat="median")["median"] == pytest.approx(0.1)
    assert N.mean_shares(df, stat="median")["routing"] == pytest.approx(10 / 200)
    ld = N.layer_detail(df, stat="median")
    assert ld.loc[ld["cls"] == "expert", "ns"].iloc[0] == pytest.approx(90)


def test_class_shares_with_wall():
    df = _constructed([(10, 90, 100)])
    sh = N.class_shares(df, wall_ns=[400])
    assert sh.loc[0, "routing"] == pytest.approx(10 / 400)
    assert sh.loc[0, "attention"] == pytest.approx(100 / 400)
    assert sh.loc[0, "unattributed"] == pytest.approx(200 / 400)
    assert np.isclose(sh.sum(axis=1).iloc[0], 1.0)


def test_bootstrap_ci_covers_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.05, size=40)
    lo, hi = bootstrap_ci(x, n_boot=4000, seed=0)
    assert lo < x.mean() < hi
    assert hi - lo < 0.05


def test_rule_table_is_one_table():
    t = N.rule_table()
    assert list(t.columns) == ["rule", "cls", "ops", "name", "src", "ctx", "note"]
    assert set(t["cls"]) <= set(N.CLASSES)
    assert t.iloc[-1]["cls"] == "other" and t.iloc[-1]["name"] == "*"


def test_flash_attention_rows():
    """olmoe_tiny_top2_fa.jsonl: same model, -fa 1 (FLASH_ATTN_EXT, mask cast to f16)."""
    df = N.read_rows(FIX / "olmoe_tiny_top2_fa.jsonl")
    assert (df.loc[df["op"] == "FLASH_ATTN_EXT", "cls"] == "attention").all()
    assert len(df[df["op"] == "FLASH_ATTN_EXT"]) == 2
    assert cls_of(df, "KQ_mask (copy)", "CPY") == "attention"
    assert N.mean_shares(df)["other"] < 0.05
    assert 0 < N.routing_share(df)["mean"] < 1
