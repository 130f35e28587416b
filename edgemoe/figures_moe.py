"""Figures of the MoE effect (edgemoe/counterfactuals.py): the total-tracking index of every MoE
member, and the controlled expert sweep. Like every figure they take the run table, draw
estimates of `edgemoe.estimates` only and return the rows they draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from edgemoe import estimates as E  # noqa: E402
from edgemoe.plotting import NoData, bench_rows, in_model_order, interval_bar, mark_label, save  # noqa: E402

PHASES = [("tg", "decode"), ("pp", "prefill")]


def _with_ffn(est: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    facts = (bench_rows(runs).dropna(subset=["ffn_width"]).drop_duplicates("model")
             [["model", *E.FFN_FACTS, "params_total", "gguf_bytes", "weight_bytes_per_token"]])
    return est.merge(facts, on="model", how="left")


def moe_effect_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """The total-tracking index per MoE member and device (decode left, prefill right), with its
    95% interval and the two brackets drawn: 0 = costs what its active parameters cost, 1 = what
    its total parameters cost."""
    plt.style.use(style)
    bench = bench_rows(runs)
    est = E.estimates(bench, baseline="", kind="bench")
    est = in_model_order(est[est["quantity"] == "tracking_index"], models)
    if est.empty:
        raise NoData("no MoE member with both dense brackets in the run table")
    many = len(est.groupby(["quant", "test"])) > 1
    est["label"] = [f"{r.device}: {mark_label(r.model, r.quant, r.test, many)}" for r in est.itertuples()]
    labels = list(dict.fromkeys(est["label"]))
    fig, axes = plt.subplots(1, 2, squeeze=False, figsize=(7.2, 1.2 + 0.32 * len(labels)))
    for ax, (phase, name) in zip(axes[0], PHASES):
        d = est[est["phase"] == phase]
        for r in d.to_dict("records"):
            i = labels.index(r["label"])
            ax.barh(i, r["value"], color="tab:blue", height=0.6)
            interval_bar(ax, i, r, color="black", capsize=2, lw=0.8)
        for x, text in ((0, "costs its active"), (1, "costs its total")):
            ax.axvline(x, color="grey", ls="--", lw=0.8)
            ax.annotate(text, (x, -0.6), fontsize=6, color="grey", ha="center", va="bottom")
        ax.set_yticks(range(len(labels)), labels if phase == "tg" else [""] * len(labels), fontsize=7)
        ax.set_ylim(len(labels) - 0.4, -0.9)
        ax.set_xlim(min(-0.1, float(d["lo"].replace(-np.inf, np.nan).min() or 0) - 0.05),
                    max(1.1, float(d["hi"].replace(np.inf, np.nan).max() or 1) + 0.05))
        ax.set_xlabel(f"total-tracking index, {name}")
    fig.tight_layout()
    save(fig, out_paths)
    return est.drop(columns="label")


def sweep_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """The controlled expert sweep of one base at fixed active FFN bytes: decode and prefill tok/s
    against the number of experts (one line per number used; file size and weight bytes read per
    token on the second axis), against the number used (one line per number of experts), and each
    member's total-tracking index; the dense member of the same active width as a dashed line."""
    plt.style.use(style)
    bench = bench_rows(runs)
    est = _with_ffn(E.estimates(bench, baseline="", kind="bench"), runs)
    members = est[(est["quantity"] == "tokens_per_s") & est["derived_from"].notna() & (est["ffn_experts"] > 0)]
    if members.empty:
        raise NoData("no sweep members (M@E<e>k<j>, M@moe) in the run table")
    index = est[(est["quantity"] == "tracking_index") & est["model"].isin(members["model"])]
    dense = est[(est["quantity"] == "tokens_per_s") & est["derived_from"].notna() & (est["ffn_experts"] == 0)]
    groups = members.groupby(["device", "quant", "derived_from"])  # decode and prefill tests side by side
    fig, axes = plt.subplots(len(groups), 4, squeeze=False, figsize=(13, 2.8 * len(groups)))
    drawn = []
    for row, ((device, quant, base), g) in enumerate(groups):
        ax_tg, ax_pp, ax_k, ax_i = axes[row]
        active_ff = int((g["ffn_experts_used"] * g["ffn_width"]).iloc[0])
        ref = dense[(dense["device"] == device) & (dense["quant"] == quant) & (dense["derived_from"] == base)
                    & (dense["ffn_width"] == active_ff)]
        for ax, phase, name in ((ax_tg, "tg", "decode"), (ax_pp, "pp", "prefill")):
            p = g[g["phase"] == phase]
            for k, line in p.sort_values("ffn_experts").groupby("ffn_experts_used"):
                ax.errorbar(line["ffn_experts"], line["value"], yerr=_arms(line), marker="o", ms=3, capsize=2,
                            label=f"k={int(k)} used")
            r = ref[ref["phase"] == phase]
            if len(r):
                ax.axhline(r["value"].iloc[0], color="grey", ls="--", lw=0.8, label="dense, active width")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("experts per layer (E)")
            ax.set_ylabel(f"{name} tok/s")
            ax.set_ylim(bottom=0)
            tests = ", ".join(sorted(p["test"].unique()))
            ax.set_title(f"{device} {base} {quant}: {tests}", loc="left", fontsize=7)
            ax.legend(fontsize=6, loc="lower left")
            drawn.append(p)
        twin = ax_tg.twinx()
        sizes = g.drop_duplicates("model").sort_values("ffn_experts")
        for i, (k, line) in enumerate(sizes.groupby("ffn_experts_used")):
            twin.plot(line["ffn_experts"], line["gguf_bytes"] / 1e9, "s:", color="grey", ms=3,
                      label="file GB" if i == 0 else None)
            twin.plot(line["ffn_experts"], line["weight_bytes_per_token"] / 1e9, "^:", color="black", ms=3,
                      label="GB read per token" if i == 0 else None)
        twin.set_ylabel("GB", fontsize=7)
        twin.set_ylim(bottom=0)
        twin.legend(fontsize=6, loc="upper right")
        tg = g[g["phase"] == "tg"]
        for e, line in tg.sort_values("ffn_experts_used").groupby("ffn_experts"):
            ax_k.errorbar(line["ffn_experts_used"], line["value"], yerr=_arms(line), marker="o", ms=3, capsize=2,
                          label=f"E={int(e)}")
        ax_k.set_xscale("log", base=2)
        ax_k.set_xlabel("experts used per token (k), width x k fixed")
        ax_k.set_ylabel("decode tok/s")
        ax_k.set_ylim(bottom=0)
        ax_k.legend(fontsize=6)
        ix = index[(index["device"] == device) & (index["quant"] == quant) & (index["model"].isin(g["model"]))
                   & (index["phase"] == "tg")]
        for k, line in ix.sort_values("ffn_experts").groupby("ffn_experts_used"):
            ax_i.errorbar(line["ffn_experts"], line["value"], yerr=_arms(line), marker="o", ms=3, capsize=2,
                          label=f"k={int(k)}")
        for y in (0, 1):
            ax_i.axhline(y, color="grey", ls="--", lw=0.8)
        ax_i.set_xscale("log", base=2)
        ax_i.set_xlabel("experts per layer (E)")
        ax_i.set_ylabel("total-tracking index, decode")
        ax_i.legend(fontsize=6)
        drawn.append(ix)
    fig.tight_layout()
    save(fig, out_paths)
    return pd.concat(drawn, ignore_index=True)


def _arms(rows: pd.DataFrame) -> np.ndarray:
    """Error-bar arms from estimate rows; an unbounded interval draws none."""
    lo, hi = (rows["value"] - rows["lo"]).to_numpy(float), (rows["hi"] - rows["value"]).to_numpy(float)
    return np.where(np.isfinite([lo, hi]), [lo, hi], np.nan)
