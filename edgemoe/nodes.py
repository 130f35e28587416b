"""Classify llama.cpp graph nodes recorded by ``edgemoe-profile`` and summarise decode time.

Input: the JSONL rows written by ``edgemoe-profile --rows`` (patch 0001-node-timing), one row per
graph node per profiled decode step, with fields ``step, graph, node, name, op, src0, src0_type,
src1, src1_type, ne, type, n_threads, backend, ns``.

Every node gets exactly one class from :data:`CLASSES`; nothing is dropped. Classes come from ONE
ordered rule table, :data:`RULES` (first match wins), that looks at the node's name, op and source
tensor names together, because names repeat at llama.cpp f7cd13301 (0.3.6):

* dense llama names its down projection ``ffn_out`` (a MUL_MAT), while ``ffn_out`` is elsewhere a
  residual ADD;
* ``Qcur``/``Kcur`` name both the projection (MUL_MAT) and the RoPE output;
* q/k norms are RMS_NORM nodes named ``norm-<il>`` whose source is ``Qcur-<il>``/``Kcur-<il>``;
* unnamed nodes appear as ``node_<idx>`` and views of unnamed tensors as `` (view)``: these are
  classified from op and sources, using the classes already given to earlier nodes of the same
  step (graph order puts sources first).

Pure Python + numpy + pandas; no Snakemake import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from edgemoe.stats import bootstrap_ci

CLASSES: tuple[str, ...] = (
    "routing",
    "expert",
    "attention",
    "norm",
    "dense_ffn",
    "lm_head",
    "noop",
    "other",
)

#: ops that move no data at compute time (their recorded time is the per-node barrier)
NOOP_OPS = frozenset({"VIEW", "RESHAPE", "PERMUTE", "TRANSPOSE", "NONE"})

_ANY = None
_SUFFIX_RE = re.compile(r" \((?:view|reshaped|permuted|transposed|cont|copy|copy of .*)\)$")
_LAYER_RE = re.compile(r"-(\d+)(?= \(|$)")
_UNNAMED_RE = re.compile(r"^(?:node_\d+)?$")


def base_name(name: str | None) -> str:
    """Strip ggml's derived-name suffixes (`` (view)``, `` (copy of X)``, ...) and the ``-<il>`` layer.

    ``"k_cache_view-3 (copy of Kcur-3)"`` -> ``"k_cache_view"``; ``" (view)"`` -> ``""``;
    ``"blk.2.attn_q.weight"`` -> unchanged.
    """
    if not name:
        return ""
    s = name
    while True:
        t = _SUFFIX_RE.sub("", s)
        if t == s:
            break
        s = t
    return re.sub(r"-\d+$", "", s)


def is_unnamed(name: str | None) -> bool:
    """``node_<idx>`` (named by the scheduler) or empty base name (view of an unnamed tensor)."""
    return bool(_UNNAMED_RE.match(base_name(name)))


def layer_of(name: str | None, src0: str | None = None, src1: str | None = None) -> int | None:
    """Layer index from the ``-<il>`` suffix of the node name, else of its sources; None if none."""
    for s in (name, src0, src1):
        if s:
            m = _LAYER_RE.search(s)
            if m:
                return int(m.group(1))
            m = re.match(r"^blk\.(\d+)\.", s)
            if m:
                return int(m.group(1))
    return None


@dataclass(frozen=True)
class Rule:
    """One row of the classification table. All given conditions must hold.

    cls:  class assigned
    ops:  set of op names (``ggml_op_desc``: MUL_MAT, SILU, ...) or None for any op
    name: regex, full match on :func:`base_name` of the node name (None: any)
    src:  regex, full match on the base name of src0 OR src1 (None: any)
    ctx:  class that the node's sources must already have in this step (None: no condition);
          ``"expert"`` means every present source is expert, ``"expert|routing"`` any of them
    note: why
    """

    cls: str
    ops: frozenset[str] | None
    name: str | None
    src: str | None
    ctx: str | None
    note: str


def _ops(*o: str) -> frozenset[str]:
    return frozenset(o)


_MM = _ops("MUL_MAT")
_ROUTING_NAMES = r"ffn_moe_(?:logits|probs|probs_biased|argsort|topk|weights|weights_sum|weights_norm|weights_scaled)"
_EXPERT_NAMES = r"ffn_moe_(?:up|gate|silu|gelu|gate_par|down|out)"
_ATTN_NAMES = (
    r"Qcur|Kcur|Vcur|Qcur_normed|Kcur_normed|Qcur_rope|Kcur_rope|Qcur_scaled|q|k|v|kq|kqv|"
    r"kq_soft_max_ext|kq_soft_max|kq_scaled|kq_masked|kqv_merged|kqv_merged_cont|kqv_out|kqv_wo|"
    r"k_cache_view|v_cache_view|wqkv|bqkv|attn_out|attn_output|__fattn__|KQ_mask|KQ_mask_swa"
)
_DENSE_FFN_NAMES = (
    r"ffn_up|ffn_up_b|ffn_up_s|ffn_gate|ffn_gate_b|ffn_gate_s|ffn_silu|ffn_gelu|ffn_relu|ffn_act|"
    r"ffn_mul|ffn_sqr\(relu\)|ffn_gate_par|ffn_down|ffn_down_b|ffn_down_s"
)
_NORM_NAMES = r"norm|attn_norm|ffn_norm|result_norm|attn_post_norm|ffn_post_norm|post_attention_norm|layer_out_norm"

#: THE classification table, first match wins. Read top to bottom.
RULES: tuple[Rule, ...] = (
    # --- MoE block: routing (any op, incl. the ffn_moe_topk VIEW and the ffn_moe_probs RESHAPE)
    Rule("routing", _ANY, _ROUTING_NAMES, None, None,
         "router matmul ffn_moe_logits, softmax ffn_moe_probs, argsort, top-k view, gathered weights, weight norm/scale"),
    # --- MoE block: experts
    Rule("expert", _ANY, _EXPERT_NAMES, None, None,
         "MUL_MAT_ID up/gate/down, activation, gate*up, last aggregation ADD ffn_moe_out"),
    Rule("expert", _ops("MUL"), r"node_\d+|", r"ffn_moe_down", None,
         "unnamed MUL: expert outputs x routing weights"),
    Rule("expert", NOOP_OPS, r"node_\d+|", None, "expert",
         "unnamed views of the weighted expert outputs (aggregation inputs)"),
    Rule("expert", _ops("ADD"), r"node_\d+|", None, "expert",
         "unnamed ADDs over those views (aggregation, k>2)"),
    Rule("dense_ffn", _ANY, r".*shexp.*", None, None,
         "shared expert (always active, e.g. qwen2moe): a dense FFN inside the MoE block"),
    # --- layout-only ops
    Rule("noop", NOOP_OPS, None, None, None, "views, reshapes, permutes, transposes, NONE"),
    # --- attention
    Rule("attention", _ops("RMS_NORM", "NORM", "MUL"), r"norm|Qcur_normed|Kcur_normed", r"Qcur|Kcur|norm", "attention",
         "q/k norms (RMS_NORM of Qcur/Kcur named norm-<il>, then the weight MUL)"),
    Rule("attention", _ANY, _ATTN_NAMES, None, None,
         "Q/K/V projections and their RoPE (same names), KV-cache copies, KQ, mask cast (flash attn), softmax, KQV, merge, output"),
    Rule("attention", _ops("FLASH_ATTN_EXT"), None, None, None, "flash attention"),
    Rule("attention", _ANY, None, r"blk\.\d+\.attn_(?:q|k|v|qkv|output|q_norm|k_norm)\.(?:weight|bias)", None,
         "anything applying an attention weight or bias"),
    # --- norms
    Rule("norm", _ops("RMS_NORM", "NORM", "MUL", "ADD"), _NORM_NAMES, None, None, "RMS norm and its weight"),
    Rule("norm", _ops("RMS_NORM", "NORM"), None, None, None, "any other normalisation op"),
    # --- dense FFN (ffn_out only as a matmul: dense llama renames its down projection ffn_out)
    Rule("dense_ffn", _ANY, _DENSE_FFN_NAMES, None, None, "dense up/gate/act/gate*up/down"),
    Rule("dense_ffn", _MM, r"ffn_out", None, None, "dense llama down projection named ffn_out"),
    Rule("dense_ffn", _ANY, None, r"blk\.\d+\.ffn_(?:up|gate|down)(?:_b|_s)?\.(?:weight|bias|scale)", None,
         "anything applying a dense FFN weight"),
    # --- LM head
    Rule("lm_head", _ANY, r"result_output", None, None, "output matmul (+softcap ops where named so)"),
    Rule("lm_head", _MM, None, r"output\.weight|token_embd\.weight", None, "matmul with the output/tied embedding"),
    # everything else (embedding lookup, residual ADDs ffn_inp/l_out/ffn_out ADD, inp_out_ids GET_ROWS, ...)
    Rule("other", _ANY, None, None, None, "embedding lookup, residual adds, output-row selection, unknown"),
)


def _match_rule(rule: Rule, op: str, bname: str, sbases: Sequence[str], src_classes: Sequence[str | None]) -> bool:
    if rule.ops is not None and op not in rule.ops:
        return False
    if rule.name is not None and not re.fullmatch(rule.name, bname):
        return False
    if rule.src is not None and not any(re.fullmatch(rule.src, s) for s in sbases if s):
        return False
    if rule.ctx is not None:
        wanted = set(rule.ctx.split("|"))
        known = [c for c in src_classes if c is not None]
        if not known:
            return False
        if len(wanted) == 1:
            if not all(c in wanted for c in known):
                return False
        elif not any(c in wanted for c in known):
            return False
    return True


def classify_node(
    name: str,
    op: str,
    src0: str | None = None,
    src1: str | None = None,
    known: Mapping[str, str] | None = None,
) -> tuple[str, int]:
    """Class and index into :data:`RULES` of one node.

    ``known`` maps full node names already classified in this step to their class (used for the
    context rules on unnamed nodes and q/k norms). Returns ``(cls, rule_index)``.
    """
    known = known or {}
    srcs = [s for s in (src0, src1) if s]
    sbases = [base_name(s) for s in srcs]
    src_classes = [known.get(s) for s in srcs]
    bname = base_name(name)
    for i, rule in enumerate(RULES):
        if _match_rule(rule, op, bname, sbases, src_classes):
            return rule.cls, i
    raise AssertionError("the last rule matches everything")  # pragma: no cover


def read_rows(path: str | Path) -> pd.DataFrame:
    """Read ``edgemoe-profile --rows`` JSONL and classify it (see :func:`classify_rows`)."""
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    return classify_rows(pd.DataFrame.from_records(recs))


def classify_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``rows`` with columns ``cls``, ``rule``, ``layer`` (nullable Int64).

    Rows are processed per (step, graph) in node order so that context rules see earlier nodes.
    """
    df = rows.copy()
    for c in ("src0", "src1"):
        if c not in df:
            df[c] = None
    df = df.sort_values(["step", "graph", "node"], kind="stable").reset_index(drop=True)
    cls_out: list[str] = []
    rule_out: list[int] = []
    layer_out: list[int | None] = []
    known: dict[str, str] = {}
    known_layer: dict[str, int | None] = {}
    last_key = None
    for step, graph, name, op, s0, s1 in zip(df["step"], df["graph"], df["name"], df["op"], df["src0"], df["src1"]):
        key = (step, graph)
        if key != last_key:
            known, known_layer = {}, {}
            last_key = key
        s0 = s0 if isinstance(s0, str) else None
        s1 = s1 if isinstance(s1, str) else None
        cls, ri = classify_node(name, op, s0, s1, known)
        layer = layer_of(name, s0, s1)
        if layer is None and is_unnamed(name):
            # views of unnamed tensors: the layer of their (earlier) source
            layer = next((known_layer[s] for s in (s0, s1) if s and known_layer.get(s) is not None), None)
        # names repeat (norm-<il>, Qcur-<il>): the latest producer of a name wins, as in the graph
        known[name] = cls
        known_layer[name] = layer
        cls_out.append(cls)
        rule_out.append(ri)
        layer_out.append(layer)
    df["cls"] = cls_out
    df["rule"] = rule_out
    df["layer"] = pd.array(layer_out, dtype="Int64")
    return df


def class_ns(df: pd.DataFrame) -> pd.DataFrame:
    """Nanoseconds per step (rows) and class (columns, all of :data:`CLASSES`, zeros included)."""
    t = df.pivot_table(index="step", columns="cls", values="ns", aggfunc="sum", fill_value=0)
    return t.reindex(columns=list(CLASSES), fill_value=0).astype("int64")


def class_shares(df: pd.DataFrame, wall_ns: Sequence[int] | Mapping[int, int] | None = None) -> pd.DataFrame:
    """Per-step share of decode time per class.

    Without ``wall_ns`` the denominator is the step's sum of node times (shares sum to 1). With
    ``wall_ns`` (the summary's ``decode_wall_ns``, indexed by step) the denominator is the step's
    wall time and a column ``unattributed`` = (wall - node sum)/wall is added, so the row still sums
    to 1.
    """
    t = class_ns(df)
    total = t.sum(axis=1)
    if wall_ns is None:
        return t.div(total, axis=0)
    wall = pd.Series({s: (wall_ns[s]) for s in t.index}, dtype="float64")
    out = t.div(wall, axis=0)
    out["unattributed"] = (wall - total) / wall
    return out


def mean_shares(df: pd.DataFrame, wall_ns=None, stat: str = "mean") -> pd.Series:
    """Mean (or ``stat="median"``) over steps of :func:`class_shares`.

    The median resists steps where a thread was descheduled mid-node on a busy machine (one node
    then takes milliseconds); medians of shares need not sum to 1.
    """
    sh = class_shares(df, wall_ns)
    return sh.median(axis=0) if stat == "median" else sh.mean(axis=0)


def routing_share(df: pd.DataFrame, n_boot: int = 10000, ci: float = 0.95, seed: int = 0,
                  stat: str = "mean") -> dict:
    """Routing share of MoE-block time, routing / (routing + expert), per step.

    Returns ``{"per_step": list[float], "mean": float, "median": float, "ci_low": float,
    "ci_high": float, "ci": ci, "stat": stat, "n_steps": int}``; the interval is a percentile
    bootstrap over steps of ``stat`` (``"mean"`` or ``"median"``; the median resists contention
    spikes). Steps with no routing or expert time (dense models) give NaN and are left out
    of the statistics; all-NaN gives NaN everywhere.
    """
    t = class_ns(df)
    moe = (t["routing"] + t["expert"]).astype(float)
    per = (t["routing"] / moe.where(moe > 0)).to_numpy(dtype=float)
    ok = per[~np.isnan(per)]
    if ok.size == 0:
        nan = float("nan")
        return {"per_step": per.tolist(), "mean": nan, "median": nan, "ci_low": nan, "ci_high": nan,
                "ci": ci, "stat": stat, "n_steps": 0}
    lo, hi = bootstrap_ci(ok, np.median if stat == "median" else np.mean, n_boot=n_boot, ci=ci, seed=seed)
    return {"per_step": per.tolist(), "mean": float(ok.mean()), "median": float(np.median(ok)),
            "ci_low": lo, "ci_high": hi, "ci": ci, "stat": stat, "n_steps": int(ok.size)}


def layer_detail(df: pd.DataFrame, stat: str = "mean") -> pd.DataFrame:
    """Per-step ns for each (layer, class), averaged over steps (``stat="mean"``) or the median
    over steps (``"median"``, robust to contention spikes); layer is <NA> outside the blocks.

    Columns: ``layer, cls, ns`` (that statistic), ``share`` (ns / sum of ns over all rows of the
    table), plus ``routing_share`` per layer = routing/(routing+expert) of that layer (NaN for dense
    layers).
    """
    per = df.groupby(["step", "layer", "cls"], dropna=False)["ns"].sum().unstack(["layer", "cls"], fill_value=0)
    g = per.median(axis=0) if stat == "median" else per.mean(axis=0)
    out = g.rename("ns").reset_index()
    out["share"] = out["ns"] / out["ns"].sum()
    wide = out.pivot_table(index="layer", columns="cls", values="ns", aggfunc="sum", fill_value=0, dropna=False)
    r = wide.get("routing", pd.Series(0.0, index=wide.index))
    e = wide.get("expert", pd.Series(0.0, index=wide.index))
    rs = (r / (r + e).where((r + e) > 0)).rename("routing_share")
    return out.merge(rs.reset_index(), on="layer", how="left")


def rule_table() -> pd.DataFrame:
    """The rule table as a DataFrame (for documentation / reports)."""
    return pd.DataFrame(
        [{"rule": i, "cls": r.cls, "ops": ",".join(sorted(r.ops)) if r.ops else "*", "name": r.name or "*",
          "src": r.src or "*", "ctx": r.ctx or "", "note": r.note} for i, r in enumerate(RULES)]
    )


def summarize(df: pd.DataFrame, wall_ns=None, n_boot: int = 10000, seed: int = 0, stat: str = "mean") -> dict:
    """One dict for records: class shares over steps (``stat``: mean or median) of the node-time
    sum, and of the wall time if ``wall_ns`` is given; routing share with its bootstrap interval."""
    out = {
        "n_steps": int(df["step"].nunique()),
        "n_nodes_per_step": int(len(df) / max(1, df["step"].nunique())),
        "stat": stat,
        "share_of_node_sum": {k: float(v) for k, v in mean_shares(df, stat=stat).items()},
        "routing_share": routing_share(df, n_boot=n_boot, seed=seed, stat=stat),
    }
    if wall_ns is not None:
        out["share_of_wall"] = {k: float(v) for k, v in mean_shares(df, wall_ns, stat=stat).items()}
    return out


__all__ = [
    "CLASSES", "NOOP_OPS", "RULES", "Rule", "base_name", "is_unnamed", "layer_of", "classify_node",
    "read_rows", "classify_rows", "class_ns", "class_shares", "mean_shares",
    "routing_share", "layer_detail", "rule_table", "summarize",
]
