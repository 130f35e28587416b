"""What every figure shares: the model colours, the order and labels of marks, interval bars,
atomic saving, and the error for a figure asked for with no data."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from edgemoe.files import atomic_path  # noqa: E402


def model_colours(models: list[str]) -> dict[str, tuple]:
    """One colour per model, fixed by its position in the registry's experiment list."""
    palette = sns.color_palette("colorblind", max(len(models), 3))
    return {m: palette[i] for i, m in enumerate(models)}


def save(fig, paths: list[str]) -> None:
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix[1:])
    plt.close(fig)


def bench_rows(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["kind"] == "bench"]


def model_order(runs: pd.DataFrame, models: list[str]) -> list[str]:
    present = set(runs["model"])
    return [m for m in models if m in present] + sorted(present - set(models))


def mark_label(model: str, quant: str, test: str, many: bool) -> str:
    """A mark's label: the model, with quant and test where the figure holds several."""
    return f"{model} ({quant}, {test})" if many else model


def in_model_order(est: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Estimates in the study's model order, then quant and test."""
    rank = {m: i for i, m in enumerate(models)}
    return est.assign(_r=est["model"].map(rank).fillna(len(rank))).sort_values(["device", "_r", "quant", "test"]).drop(
        columns="_r")


def failed_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per failed bench cell: device, model, quant, test, status."""
    b = bench_rows(runs)
    return b[b["status"] != "ok"].drop_duplicates(["device", "model", "quant", "test"])[
        ["device", "model", "quant", "test", "status"]]


def interval_bar(ax, y, e, horizontal=True, **kw):
    """A marker with its interval as error bar, from an estimate row (value, lo, hi). An unbounded
    interval (too few rounds) draws no whisker; the figure's CSV says [-inf, inf]."""

    def arm(d):
        return d if math.isfinite(d) else float("nan")

    err = [[arm(e["value"] - e["lo"])], [arm(e["hi"] - e["value"])]]
    if horizontal:
        ax.errorbar(e["value"], y, xerr=err, **kw)
    else:
        ax.errorbar(y, e["value"], yerr=err, **kw)


def device_panels(devices: list[str], n_rows: int):
    fig, axes = plt.subplots(1, len(devices), squeeze=False, figsize=(3.4 * len(devices), 0.9 + 0.35 * n_rows))
    return fig, list(zip(axes[0], devices))


class NoData(ValueError):
    """A figure asked for with no rows to draw: the DAG leaves such figures out of figures/all."""
