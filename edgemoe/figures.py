"""The study's figures from the run table (PNG and PDF, one colour per model throughout)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from edgemoe.files import atomic_path  # noqa: E402
from edgemoe.stats import median_ci  # noqa: E402


def model_colours(models: list[str]) -> dict[str, tuple]:
    """One colour per model, fixed by its position in the registry's experiment list."""
    palette = sns.color_palette("colorblind", max(len(models), 3))
    return {m: palette[i] for i, m in enumerate(models)}


def save(fig, paths: list[str]) -> None:
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix[1:])
    plt.close(fig)


def throughput_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> None:
    """Prefill and generation tok/s per model, one panel row per device; whiskers are 95%
    bootstrap intervals of the median; failed cells are drawn as labelled markers at zero."""
    plt.style.use(style)
    bench = runs[runs["kind"] == "bench"]
    order = [m for m in models if m in set(bench["model"])] + sorted(set(bench["model"]) - set(models))
    colours = model_colours(order)
    devices = sorted(bench["device"].unique())
    fig, axes = plt.subplots(len(devices), 2, squeeze=False,
                             figsize=(3.4 * 2, 0.6 + 1.2 + 0.25 * len(order) * len(devices)))
    for row, device in enumerate(devices):
        d = bench[bench["device"] == device]
        for col, (phase, label) in enumerate([("pp", "prefill"), ("tg", "generation")]):
            ax = axes[row][col]
            for i, model in enumerate(order):
                m = d[d["model"] == model]
                ok = m[(m["status"] == "ok") & (m["phase"] == phase)]
                failed = m[m["status"] != "ok"]
                if not failed.empty:
                    ax.plot(0, i, marker="x", color="crimson", ms=6)
                    ax.annotate(f" {failed.iloc[0]['status'].upper()}", (0, i), va="center", fontsize=7,
                                color="crimson")
                    continue
                if ok.empty:
                    continue
                est = median_ci(ok["tokens_per_s"])
                ax.barh(i, est.value, color=colours[model], height=0.7)
                ax.errorbar(est.value, i, xerr=[[est.value - est.lo], [est.hi - est.value]], color="black",
                            capsize=2, lw=0.8)
            tests = ", ".join(sorted(d.loc[d["phase"] == phase, "test"].unique()))
            ax.set_yticks(range(len(order)), order if col == 0 else [""] * len(order))
            ax.invert_yaxis()
            ax.set_xlabel(f"{label} throughput (tokens/s)")
            ax.set_xlim(left=0)
            ax.set_title(f"{device}: {label} ({tests})", loc="left")
    twin = bool(bench["is_twin"].any())
    fig.suptitle("Median over repetitions, 95% bootstrap interval" + ("; shape twins (random weights)" if twin else ""),
                 fontsize=7, y=1.0)
    fig.tight_layout()
    save(fig, out_paths)
