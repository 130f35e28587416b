"""The engine-axis figure (edgemoe/engines_compare.py): left, each model's speed-up on the other
engines over the reference one (decode and prefill, 95% intervals); right, each MoE / dense decode
ratio on every engine (engines as colours). The caption's first sentence answers the question
from the numbers (`engines_compare.finding`, passed on as the returned frame's attrs["finding"])."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from edgemoe import engines_compare as C  # noqa: E402
from edgemoe.plotting import NoData, interval_bar, save  # noqa: E402


def engines_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str], baseline: str,
                   engines: list[str] = ()) -> pd.DataFrame:
    plt.style.use(style)
    c = C.comparison(runs, baseline, engines)
    engines = list(c["engines"]["engine"])
    sp, ratio = c["speedup"], c["ratio"][c["ratio"]["phase"] == "tg"]
    if len(engines) < 2 or sp.empty:
        raise NoData("fewer than two engines measured the same model files")
    order = [m for m in models if m in set(sp["model"])] + sorted(set(sp["model"]) - set(models))
    colours = dict(zip(engines, sns.color_palette("colorblind", max(len(engines), 3))))
    pairs = list(dict.fromkeys(f"{r.model} / {r.reference}" for r in ratio.itertuples()))
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.6, 1.4 + 0.34 * max(len(order), len(pairs), 2)))
    for r in sp.to_dict("records"):
        y = order.index(r["model"]) + (-0.15 if r["phase"] == "tg" else 0.15)
        interval_bar(left, y, r, fmt="o" if r["phase"] == "tg" else "s", color=colours[r["engine"]],
                     mfc="white" if r["phase"] == "pp" else colours[r["engine"]], capsize=2, lw=0.8, ms=4)
    left.axvline(1, color="grey", ls="--", lw=0.8)
    left.set_yticks(range(len(order)), order, fontsize=7)
    left.set_ylim(len(order) - 0.5, -0.5)
    left.set_xlabel(f"speed-up over {engines[0]}\n(filled: decode, open: prefill)", fontsize=7)
    width = 0.8 / len(engines)
    for r in ratio.to_dict("records"):
        i = engines.index(r["engine"])
        y = pairs.index(f"{r['model']} / {r['reference']}") - 0.4 + width * (i + 0.5)
        right.barh(y, r["value"], height=width * 0.9, color=colours[r["engine"]], label=r["engine"])
        interval_bar(right, y, r, color="black", capsize=2, lw=0.8)
    right.axvline(1, color="grey", ls="--", lw=0.8)
    right.set_yticks(range(len(pairs)), pairs, fontsize=7)
    right.set_ylim(len(pairs) - 0.5, -0.5)
    right.set_xlabel("decode tok/s ratio, MoE / dense", fontsize=7)
    handles = {h.get_label(): h for h in right.get_legend_handles_labels()[0]}
    right.legend(handles.values(), handles.keys(), fontsize=6, loc="lower right")
    fig.tight_layout()
    save(fig, out_paths)
    drawn = pd.concat([sp, ratio, c["change"]], ignore_index=True)
    drawn.attrs["finding"] = C.finding(c)
    return drawn
