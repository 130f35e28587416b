"""The memory-regime figure (edgemoe/regimes.py): decode against an emulated memory ceiling. Like
every figure it takes the run table, draws the rows of `edgemoe.tables.regimes_table` (estimates
of `edgemoe.estimates` only) and returns them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from edgemoe.plotting import NoData, bench_rows, model_colours, save  # noqa: E402

STYLE = {"mmap": ("-", "o"), "no-mmap": ("--", "s")}


def _ceiling_axis(ax, t: pd.DataFrame) -> None:
    ax.set_xscale("log")
    names = dict(zip(t["ceiling_GB"], t["ceiling"]))
    ticks = sorted(names)
    ax.set_xticks(ticks, [f"{names[g]}\n{g:.0f}" if not names[g][0].isdigit() else f"{g:g}" for g in ticks],
                  fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("memory ceiling (GB)")


def ceilings_figure(runs: pd.DataFrame, models: list[str], baseline: str, style: str,
                    out_paths: list[str]) -> pd.DataFrame:
    """Three panels against the memory ceiling (log axis), one colour per model, solid = mmap,
    dashed = weights read into memory: decode tok/s with each model's file size marked (a dotted
    line) and cells killed by the ceiling as crosses on the axis; decode relative to the
    same-active baseline under the same ceiling; storage MB read per generated token."""
    from edgemoe.tables import regimes_table

    plt.style.use(style)
    t = regimes_table(bench_rows(runs), baseline, models)
    if t.empty:
        raise NoData("no cell ran under an emulated memory ceiling")
    colours = model_colours(list(dict.fromkeys([*models, *t["model"]])))
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4))
    floor = np.nanmin(t["gen_lo"].replace(-np.inf, np.nan)) if t["gen_tok_s"].notna().any() else 1.0
    for (model, mode), d in t.groupby(["model", "load_mode"], sort=False):
        d = d.sort_values("ceiling_GB")
        ls, marker = STYLE[mode]
        c = colours[model]
        ok = d[d["gen_tok_s"].notna()]
        axes[0].plot(ok["ceiling_GB"], ok["gen_tok_s"], ls=ls, marker=marker, color=c, ms=4, lw=1,
                     label=f"{model} ({mode})")
        axes[0].fill_between(ok["ceiling_GB"], ok["gen_lo"], ok["gen_hi"], color=c, alpha=0.12, lw=0)
        dead = d[d["gen_tok_s"].isna() & (d["failed_cells"] > 0)]
        axes[0].scatter(dead["ceiling_GB"], [floor * 0.6] * len(dead), marker="x", color=c, s=22, zorder=3)
        if mode == "mmap":
            axes[0].axvline(d["file_GB"].iloc[0], color=c, ls=":", lw=0.8)
        if model != baseline:
            axes[1].errorbar(ok["ceiling_GB"], ok["gen_ratio_to_baseline"],
                             yerr=[(ok["gen_ratio_to_baseline"] - ok["ratio_lo"]).clip(lower=0),
                                   (ok["ratio_hi"] - ok["gen_ratio_to_baseline"]).clip(lower=0)],
                             ls=ls, marker=marker, color=c, ms=4, lw=1, capsize=2, label=f"{model} ({mode})")
        axes[2].plot(ok["ceiling_GB"], ok["read_MB_per_token"], ls=ls, marker=marker, color=c, ms=4, lw=1)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("decode tok/s (dotted: file size; x: killed)")
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set_ylabel(f"decode vs {baseline}")
    axes[2].set_yscale("symlog", linthresh=1.0)
    axes[2].set_ylabel("storage MB read per token")
    for ax in axes:
        _ceiling_axis(ax, t)
    axes[0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    save(fig, out_paths)
    return t
