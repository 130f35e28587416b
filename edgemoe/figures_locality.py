"""The expert-locality figure (edgemoe.locality): per decode mode, the LRU hit rate of a per-layer
expert cache against its capacity in units of k (every layer pooled, the band spanning the layers),
and the share of selected experts reused from the previous token, per layer. It takes the locality
table (results/locality.parquet), not the run table, and returns the numbers it draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from edgemoe import locality as L  # noqa: E402
from edgemoe.plotting import NoData, model_colours, save  # noqa: E402


def locality_figure(sel: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """LRU hit rate against c/k (left) and reuse share per layer (right), one row of panels per
    decode mode; one colour per model; dashed grey: independent uniform routing (edgemoe.locality.
    uniform_curve, simulated with the same steps per prompt; reuse k/E)."""
    if sel.empty:
        raise NoData("no expert selections in the locality table")
    plt.style.use(style)
    curve = L.lru_curve(sel)
    reuse = L.reuse(sel)
    order = [m for m in models if m in set(sel["model"])] + sorted(set(sel["model"]) - set(models))
    colours = model_colours(order)
    facts = sel.drop_duplicates("model").set_index("model")
    label = {
        m: L.model_label(m, bool(facts.at[m, "is_twin"]), facts.at[m, "router_skew"], facts.at[m, "weights_source"])
        for m in order
    }
    modes = [d for d in L.DECODED if d in set(sel["decode"])] + sorted(set(sel["decode"]) - set(L.DECODED))
    fig, axes = plt.subplots(len(modes), 2, squeeze=False, figsize=(7.2, 0.4 + 2.6 * len(modes)))
    drawn = []
    group = ["model", "device", "engine", "quant", "prompt_set"]
    for row, mode in zip(axes, modes):
        ax, bx = row
        c, r, d = curve[curve["decode"] == mode], reuse[reuse["decode"] == mode], sel[sel["decode"] == mode]
        refs = {}  # (E, k, steps per sequence): drawn once
        for key, g in c.groupby(group, sort=False):
            m = key[0]
            pooled = g[g["layer"] == L.ALL_LAYERS].sort_values("capacity")
            band = g[g["layer"] != L.ALL_LAYERS].groupby("c_over_k")["hit_rate"].agg(["min", "max"]).reset_index()
            ax.fill_between(band["c_over_k"], band["min"], band["max"], color=colours[m], alpha=0.15, lw=0)
            ax.plot(
                pooled["c_over_k"],
                pooled["hit_rate"],
                color=colours[m],
                marker="o" if len(pooled) <= 16 else None,
                ms=2.5,
                lw=1.2,
                label=label[m],
            )
            drawn.append(
                pooled.assign(panel="lru_hit_rate", layer_min=band["min"].to_numpy(), layer_max=band["max"].to_numpy())
            )
            seqs = d[(d[group] == pd.Series(key, index=group)).all(axis=1)].drop_duplicates(
                ["run_id", "prompt_id", "step"]
            )
            lengths = tuple(sorted(seqs.groupby(["run_id", "prompt_id"]).size()))
            refs[(int(pooled["n_expert"].iloc[0]), int(pooled["n_expert_used"].iloc[0]), lengths)] = key
        for (e, k, lengths), key in refs.items():
            u = L.uniform_curve(e, k, list(lengths))
            ax.plot(u["c_over_k"], u["hit_rate"], color="grey", ls="--", lw=0.8)
            drawn.append(
                u.assign(
                    panel="uniform_lru_hit_rate", decode=mode, n_expert=e, n_expert_used=k, **dict(zip(group, key))
                )
            )
        for key, g in r[r["layer"] != L.ALL_LAYERS].groupby(group, sort=False):
            g = g.sort_values("layer")
            bx.plot(g["layer"], g["reuse_share"], color=colours[key[0]], marker="o", ms=2.5, lw=1.2)
            bx.axhline(g["uniform_reuse_share"].iloc[0], color="grey", ls="--", lw=0.8)
            drawn.append(g.assign(panel="reuse_share"))
        top = max(e / k for e, k, _ in refs)
        ticks = [2**i for i in range(0, int(np.log2(top)) + 1)] + ([top] if np.log2(top) % 1 else [])
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("cache capacity per layer c / k")
        ax.set_ylabel("LRU hit rate")
        ax.set_title(f"decode: {mode}", loc="left")
        ax.legend(fontsize=6, loc="lower right")
        bx.xaxis.set_major_locator(MaxNLocator(integer=True))
        bx.set_ylim(0, 1.02)
        bx.set_xlabel("MoE layer")
        bx.set_ylabel("share reused from previous token")
        bx.set_title("dashed: independent uniform routing, same steps per prompt", loc="left", fontsize=7)
    fig.tight_layout()
    save(fig, out_paths)
    return pd.concat(drawn, ignore_index=True)
