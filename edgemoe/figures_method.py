"""Figures of the study's own method (edgemoe/prompt_cells.py): the distribution of inter-token
latency per model (prompt runs and profiled decode steps), and how far prompt-run decode is from
llama-bench decode. Like every figure they draw estimates of the estimates layer
(edgemoe.estimates_method) and return the rows they draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from edgemoe import estimates as E  # noqa: E402
from edgemoe.estimates_method import run_gaps  # noqa: E402
from edgemoe.plotting import NoData, interval_bar, model_colours, save  # noqa: E402

SOURCES = [("prompt", "prompt runs (llama-cli): token arrival gaps"), ("profile", "edgemoe-profile: decode steps")]


def _gaps_by_model(runs: pd.DataFrame, kind: str) -> dict[str, np.ndarray]:
    """Every inter-token gap (ms) per model, as edgemoe.estimates_method.run_gaps reads them."""
    d = E.usable(runs, kind, "tg")
    return {m: np.concatenate(run_gaps(g) or [np.array([])]) for m, g in d.groupby("model", sort=False)}


def latency_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """Per source, the distribution of inter-token latency per model (violins, log axis) with the
    p50/p90/p99 estimates marked; a third panel: prompt-run decode over llama-bench decode per
    model (where both exist), with its interval."""
    from edgemoe.tables_method import latency_table, method_table

    plt.style.use(style)
    lat, ratio = latency_table(runs, models), method_table(runs, models)
    sources = [(k, title) for k, title in SOURCES if (runs["kind"] == k).any()]
    if lat.empty:
        raise NoData("no prompt or profile cells in the run table")
    colours = model_colours(list(dict.fromkeys([*models, *lat["model"]])))
    panels = len(sources) + (not ratio.empty)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.2), squeeze=False)
    for ax, (kind, title) in zip(axes[0], sources):
        gaps = _gaps_by_model(runs, kind)
        names = [m for m in models if m in gaps and gaps[m].size] + [m for m in gaps if m not in models and gaps[m].size]
        parts = ax.violinplot([gaps[m] for m in names], showextrema=False)
        for body, m in zip(parts["bodies"], names):
            body.set_facecolor(colours[m])
            body.set_alpha(0.5)
        rows = lat[lat["source"].str.startswith(kind)]
        for i, m in enumerate(names, start=1):
            r = rows[rows["model"] == m]
            for q, marker in ((50, "o"), (90, "^"), (99, "v")):
                if len(r) and np.isfinite(r.iloc[0][f"itl_p{q}_ms"]):
                    ax.plot(i, r.iloc[0][f"itl_p{q}_ms"], marker=marker, color="black", ms=3)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("inter-token latency (ms); o p50, ^ p90, v p99")
        ax.set_title(title, fontsize=8)
    if not ratio.empty:
        ax = axes[0][-1]
        for i, r in enumerate(ratio.to_dict("records")):
            ax.barh(i, r["ratio"], color=colours.get(r["model"], "grey"), height=0.6)
            interval_bar(ax, i, {"value": r["ratio"], "lo": r["ratio_lo"], "hi": r["ratio_hi"]}, color="black",
                         capsize=2, lw=0.8)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(ratio)), ratio["model"], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("decode: prompt runs / llama-bench")
        ax.set_title("method agreement", fontsize=8)
    fig.tight_layout()
    save(fig, out_paths)
    drawn = lat.assign(figure_part="latency")
    if not ratio.empty:
        drawn = pd.concat([drawn, ratio.assign(figure_part="method_ratio")], ignore_index=True)
    return drawn
