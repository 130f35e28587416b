"""The study's figures (PNG and PDF, one colour per model throughout).

Every figure function takes the run table and returns the numbers it draws, one row per mark,
which workflow/scripts/figure.py writes beside the figure (figures/<name>.csv): estimates come
from `edgemoe.estimates` only, so a figure and the table it illustrates cannot disagree."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from edgemoe import estimates as E  # noqa: E402
from edgemoe.plotting import (  # noqa: E402
    NoData,
    bench_rows,
    device_panels,
    failed_cells,
    interval_bar,
    mark_label,
    model_colours,
    model_order,
    in_model_order,
    save,
)
from edgemoe.figures_moe import moe_effect_figure, sweep_figure  # noqa: E402,F401 (figure_<name> rules find them here)
from edgemoe.figures_locality import locality_figure  # noqa: E402,F401 (figure_locality: the locality table)
from edgemoe.figures_regimes import ceilings_figure  # noqa: E402,F401
from edgemoe.figures_method import latency_figure  # noqa: E402,F401
from edgemoe.figures_engines import engines_figure  # noqa: E402,F401


def throughput_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """Prefill and generation tok/s per model, one panel row per device; whiskers are the 95%
    intervals of the estimates; failed cells are drawn as labelled markers at zero."""
    plt.style.use(style)
    est = in_model_order(E.medians(runs, "bench", interval="auto"), models)
    fails = failed_cells(runs)
    colours = model_colours(model_order(bench_rows(runs), models))
    devices = sorted(bench_rows(runs)["device"].unique())
    many = len(est.groupby(["quant", "test"])) > 1
    labels = list(dict.fromkeys([mark_label(r.model, r.quant, r.test, many) for r in est.itertuples()]
                                + [mark_label(r.model, r.quant, r.test, many) for r in fails.itertuples()]))
    fig, axes = plt.subplots(len(devices), 2, squeeze=False,
                             figsize=(3.4 * 2, 0.6 + 1.2 + 0.25 * len(labels) * len(devices)))
    for row, device in enumerate(devices):
        for col, (phase, name) in enumerate([("pp", "prefill"), ("tg", "generation")]):
            ax = axes[row][col]
            d = est[(est["device"] == device) & (est["phase"] == phase)]
            for r in d.to_dict("records"):
                i = labels.index(mark_label(r["model"], r["quant"], r["test"], many))
                ax.barh(i, r["value"], color=colours[r["model"]], height=0.7)
                interval_bar(ax, i, r, color="black", capsize=2, lw=0.8)
            for r in fails[fails["device"] == device].itertuples():
                i = labels.index(mark_label(r.model, r.quant, r.test, many))
                ax.plot(0, i, marker="x", color="crimson", ms=6)
                ax.annotate(f" {r.status.upper()}", (0, i), va="center", fontsize=7, color="crimson")
            tests = ", ".join(sorted(d["test"].unique()))
            ax.set_yticks(range(len(labels)), labels if col == 0 else [""] * len(labels))
            ax.set_ylim(len(labels) - 0.5, -0.5)
            ax.set_xlabel(f"{name} throughput (tokens/s)")
            ax.set_xlim(left=0)
            ax.set_title(f"{device}: {name} ({tests})", loc="left")
    twin = bool(bench_rows(runs)["is_twin"].any())
    fig.suptitle("Estimates with 95% intervals (methods: figures/throughput.csv)"
                 + ("; shape twins (random weights)" if twin else ""), fontsize=7, y=1.0)
    fig.tight_layout()
    save(fig, out_paths)
    return est


def gap_figure(runs: pd.DataFrame, models: list[str], baseline: str, style: str, out_paths: list[str]) -> pd.DataFrame:
    """Generation throughput of each model relative to the same-active dense baseline, per device,
    with the 95% interval of the ratio (the table's 'gen vs baseline'); 1 = as fast."""
    plt.style.use(style)
    est = E.ratios(runs, E.baseline_pairs(runs, baseline), "bench", "tg", interval="auto")
    est = in_model_order(est, models)
    colours = model_colours(model_order(bench_rows(runs), models))
    devices = sorted(bench_rows(runs)["device"].unique())
    many = len(est.groupby(["quant", "test"])) > 1
    labels = list(dict.fromkeys(mark_label(r.model, r.quant, r.test, many) for r in est.itertuples()))
    fig, panels = device_panels(devices, len(labels))
    for ax, device in panels:
        for r in est[est["device"] == device].to_dict("records"):
            i = labels.index(mark_label(r["model"], r["quant"], r["test"], many))
            if pd.isna(r["value"]):
                ax.annotate(" not measured / failed", (1, i), va="center", fontsize=7, color="crimson")
                continue
            interval_bar(ax, i, r, fmt="o", color=colours[r["model"]], capsize=3)
            ax.annotate(f"{(r['value'] - 1) * 100:+.1f}%", (r["hi"] if np.isfinite(r["hi"]) else r["value"], i),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        ax.axvline(1, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel(f"generation tok/s relative to {baseline}")
        ax.set_title(device, loc="left")
    fig.tight_layout()
    save(fig, out_paths)
    return est


def memory_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """Peak RSS of the benchmark process and model file size per model, against the device's
    memory ceiling; failed cells marked with their status. Maxima over cells, not estimates."""
    plt.style.use(style)
    bench = bench_rows(runs)
    order = model_order(bench, models)
    colours = model_colours(order)
    facts = (bench.groupby(["device", "model"], sort=False)
             .agg(peak_rss_bytes=("peak_rss_bytes", "max"), gguf_bytes=("gguf_bytes", "max"),
                  memory_ceiling_bytes=("memory_ceiling_bytes", "max"),
                  status=("status", lambda s: next((x for x in s if x != "ok"), "ok")))
             .reset_index())
    facts = in_model_order(facts.assign(quant="", test=""), models).drop(columns=["quant", "test"])
    fig, panels = device_panels(sorted(bench["device"].unique()), len(order))
    for ax, device in panels:
        d = facts[facts["device"] == device]
        ceiling = d["memory_ceiling_bytes"].max() / 2**30
        for r in d.to_dict("records"):
            i = order.index(r["model"])
            ax.barh(i, r["peak_rss_bytes"] / 2**30, color=colours[r["model"]], height=0.6)
            ax.plot(r["gguf_bytes"] / 2**30, i, marker="|", ms=12, color="black")
            if r["status"] != "ok":
                ax.annotate(f" {r['status'].upper()}", (r["peak_rss_bytes"] / 2**30, i), va="center", fontsize=7,
                            color="crimson")
        ax.axvline(ceiling, color="crimson", lw=1, ls="--")
        ax.annotate(f"ceiling {ceiling:.0f} GiB", (ceiling, len(order) - 0.5), ha="right", va="bottom",
                    fontsize=7, color="crimson", xytext=(-2, 2), textcoords="offset points")
        ax.set_xscale("log")  # small models and the device ceiling on one axis
        ax.set_xlim(left=min(d["gguf_bytes"].min(), d["peak_rss_bytes"].min()) / 2**30 / 2, right=ceiling * 1.3)
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(len(order) - 0.5, -0.7)
        ax.set_xlabel("peak RSS (GiB, log scale); | = model file size")
        ax.set_title(device, loc="left")
    fig.tight_layout()
    save(fig, out_paths)
    return facts


def energy_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """Net joules per generated token (idle baseline subtracted); a device without an energy
    counter says so instead of showing zeros."""
    import textwrap

    plt.style.use(style)
    bench = bench_rows(runs)
    order = model_order(bench, models)
    colours = model_colours(order)
    est = E.medians(bench[bench["phase"] == "tg"], "bench", "energy_j_per_token_net", "energy_j_per_token",
                    interval="auto")
    est = in_model_order(est, models)
    fig, panels = device_panels(sorted(bench["device"].unique()), len(order))
    for ax, device in panels:
        e = est[est["device"] == device]
        if e.empty:
            d = bench[(bench["device"] == device) & (bench["phase"] == "tg")]
            reasons = sorted(set(d["energy_reason"].dropna())) or ["no generation cells"]
            text = "\n".join(textwrap.fill(r, 48) for r in reasons[:2])
            ax.text(0.5, 0.5, "energy not measured on this device:\n" + text, ha="center", va="center", fontsize=6,
                    transform=ax.transAxes)
            ax.set_axis_off()
        else:
            for r in e.to_dict("records"):
                i = order.index(r["model"])
                ax.barh(i, r["value"], color=colours[r["model"]], height=0.6)
                interval_bar(ax, i, r, color="black", capsize=2)
            ax.set_yticks(range(len(order)), order)
            ax.set_ylim(len(order) - 0.5, -0.5)
            ax.set_xlabel("energy per generated token (J, net of idle)")
        ax.set_title(device, loc="left")
    fig.tight_layout()
    save(fig, out_paths)
    return est


def roofline_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """Generation tok/s against weight bytes read per token (left) and against active and total
    parameters (right), with the device's measured read-bandwidth roofline: if cost tracked active
    parameters, the MoE would sit with the dense models of its active size. A device whose
    records carry no bandwidth is drawn without the line and says so."""
    plt.style.use(style)
    bench = bench_rows(runs)
    order = model_order(bench, models)
    colours = model_colours(order)
    all_est = E.estimates(bench, baseline="", kind="bench")
    est = in_model_order(all_est[(all_est["quantity"] == "tokens_per_s") & (all_est["phase"] == "tg")], models)
    roof = all_est[all_est["quantity"] == "roofline_efficiency"][["device", "engine", "quant", "test",
                                                                  "weights_source", "model", "value"]]
    est = est.merge(roof.rename(columns={"value": "roofline_efficiency"}), how="left",
                    on=["device", "engine", "quant", "test", "weights_source", "model"])
    facts = (bench.groupby(["device", "model"]).agg(
        weight_bytes_per_token=("weight_bytes_per_token", "max"), params_active=("params_active", "max"),
        params_total=("params_total", "max"), device_read_gbs=("device_read_gbs", "median")).reset_index())
    est = est.merge(facts, on=["device", "model"], how="left")
    devices = sorted(bench["device"].unique())
    fig, axes = plt.subplots(len(devices), 2, squeeze=False, figsize=(6.8, 2.6 * len(devices)))
    for row, device in enumerate(devices):
        d = est[est["device"] == device]
        ax_b, ax_p = axes[row]
        for r in d.to_dict("records"):
            c = colours[r["model"]]
            gb = r["weight_bytes_per_token"] / 1e9
            interval_bar(ax_b, gb, r, horizontal=False, fmt="o", color=c, label=r["model"], capsize=2)
            if np.isfinite(r.get("roofline_efficiency", np.nan)):
                ax_b.annotate(f"{r['roofline_efficiency']:.0%}", (gb, r["value"]), fontsize=5, color=c,
                              xytext=(3, 3), textcoords="offset points")
            ax_p.plot(r["params_active"] / 1e9, r["value"], "o", color=c)
            ax_p.plot(r["params_total"] / 1e9, r["value"], "o", mfc="none", color=c)
            if r["params_active"] != r["params_total"]:
                ax_p.annotate("", (r["params_total"] / 1e9, r["value"]), (r["params_active"] / 1e9, r["value"]),
                              arrowprops=dict(arrowstyle="-", color=c, ls=":"))
        finite = pd.concat([d["value"], d["hi"]]).replace([np.inf, -np.inf], np.nan).dropna()
        top = max(float(finite.max()) * 1.4, 1.0) if len(finite) else 1.0  # an infinite interval sets no limit
        bw = d["device_read_gbs"].dropna()
        if len(bw) and d["weight_bytes_per_token"].notna().any():
            gb = d["weight_bytes_per_token"].dropna() / 1e9
            xs = np.linspace(max(gb.min() * 0.7, bw.median() / top), gb.max() * 1.3, 100)
            ax_b.plot(xs, bw.median() / xs, color="grey", ls="--", lw=0.8,
                      label=f"roofline: read bandwidth {bw.median():.1f} GB/s / bytes")
        elif len(d):
            ax_b.annotate("no measured read bandwidth in these records", (0.02, 0.95), xycoords="axes fraction",
                          fontsize=6, color="crimson", va="top")
        ax_b.set_xlabel("weight bytes read per token (GB)")
        ax_b.set_ylabel("generation tok/s")
        ax_b.set_ylim(bottom=0, top=top)
        ax_b.set_title(device, loc="left")
        ax_b.legend(fontsize=6, loc="upper right")
        ax_p.set_xlabel("parameters (B): filled = active, open = total")
        ax_p.set_ylabel("generation tok/s")
        ax_p.set_ylim(bottom=0)
    fig.tight_layout()
    save(fig, out_paths)
    return est


def drift_figure(runs: pd.DataFrame, models: list[str], style: str | None, out_paths: list[str]) -> pd.DataFrame:
    """Rounds design: tok/s against round per model (one panel per device, engine, quant, test and
    phase), and generation tok/s relative to the model's median over counted rounds; warm-up
    rounds drawn hollow (recorded, not estimated); model colours as elsewhere."""
    from matplotlib.ticker import MaxNLocator

    if style:
        plt.style.use(style)
    b = bench_rows(runs)
    b = b[b["round"].notna() & (b["status"] == "ok")]
    warm = b["warmup"].fillna(False).astype(bool) if "warmup" in b.columns else pd.Series(False, index=b.index)
    keys = ["device", "engine", "quant", "test", "model", "phase", "round"]
    r = (b.assign(warmup=warm).groupby(keys, sort=True)
         .agg(tokens_per_s=("tokens_per_s", "median"), warmup=("warmup", "any")).reset_index())
    r["round"] = r["round"].astype(int)
    counted = r[~r["warmup"]]
    med = counted.groupby(["device", "engine", "quant", "test", "model", "phase"])["tokens_per_s"].median()
    r["relative_pct"] = [row.tokens_per_s / med.get(tuple(getattr(row, k) for k in keys[:-1]), np.nan) * 100
                         for row in r.itertuples()]
    order = model_order(b, models) if len(b) else []
    colours = model_colours(order)
    panels = []
    for key, g in r.groupby(["device", "engine", "quant", "test"], sort=True):
        phases = [p for p in ("pp", "tg") if p in set(g["phase"])]
        panels += [(*key, p, False) for p in phases] + ([(*key, "tg", True)] if "tg" in phases else [])
    ncol = min(3, max(len(panels), 1))
    nrow = max(1, -(-len(panels) // ncol))
    fig, axes = plt.subplots(nrow, ncol, squeeze=False, figsize=(3.2 * ncol, 0.6 + 2.2 * nrow))
    for ax, (dev, eng, q, t, p, rel) in zip(axes.flat, panels):
        g = r[(r["device"] == dev) & (r["engine"] == eng) & (r["quant"] == q) & (r["test"] == t) & (r["phase"] == p)]
        for m in order:
            s = g[g["model"] == m].sort_values("round")
            if s.empty:
                continue
            y = s["relative_pct"] if rel else s["tokens_per_s"]
            ax.plot(s["round"], y, lw=1, color=colours[m], label=m)
            ax.plot(s["round"][~s["warmup"]], y[~s["warmup"]], "o", ms=3, color=colours[m])
            ax.plot(s["round"][s["warmup"]], y[s["warmup"]], "o", ms=3, mfc="none", color=colours[m])
        label = {"pp": "prefill", "tg": "generation"}[p]
        ax.set_ylabel(f"{label} % of model median" if rel else f"{label} tokens/s")
        ax.set_xlabel("round (hollow: warm-up)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{dev} {eng}\n{q}, {t}: {label}" + (" (relative)" if rel else ""), loc="left", fontsize=6)
        if rel:
            ax.axhline(100, color="grey", lw=0.6, ls=":")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if panels:
        axes.flat[0].legend(fontsize=6, frameon=False)
    fig.suptitle("Throughput per round (median over each round's repetitions)", fontsize=7, y=1.0)
    fig.tight_layout()
    save(fig, out_paths)
    return r


CLASS_COLOURS = {"routing": "#d62728", "expert": "#ff7f0e", "attention": "#1f77b4", "norm": "#9467bd",
                 "dense_ffn": "#2ca02c", "lm_head": "#8c564b", "noop": "#c7c7c7", "other": "#7f7f7f"}


def breakdown_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> pd.DataFrame:
    """Where decode time goes: stacked share of node time per class, one bar per model and device;
    the MoE bars are annotated with the routing share of MoE-block time and its interval."""
    from edgemoe.nodes import CLASSES as NODE_CLASSES
    from edgemoe.tables import breakdown_table

    plt.style.use(style)
    t = breakdown_table(runs)
    if t.empty:
        raise NoData("breakdown figure: no ok profile cells in the run table (config profiling.enabled)")
    fig, ax = plt.subplots(figsize=(6.8, 0.9 + 0.35 * max(len(t), 1)))
    order = {m: i for i, m in enumerate(models)}
    t = t.sort_values(["device", "model"], key=lambda s: s.map(order).fillna(99) if s.name == "model" else s)
    labels = [f"{d}: {m}" for d, m in zip(t["device"], t["model"])]
    left = np.zeros(len(t))
    for c in NODE_CLASSES:
        v = t[f"share_{c}"].to_numpy() * 100
        ax.barh(range(len(t)), v, left=left, color=CLASS_COLOURS[c], label=c.replace("_", " "), height=0.7)
        left += v
    for i, (_, r) in enumerate(t.iterrows()):
        if not np.isnan(r["routing_share_of_moe"]):
            ax.annotate(f"routing {r['routing_share_of_moe'] * 100:.1f}% of MoE block "
                        f"[{r['routing_lo'] * 100:.1f}, {r['routing_hi'] * 100:.1f}]",
                        (100, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6)
    ax.set_yticks(range(len(t)), labels)
    ax.set_ylim(len(t) - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of decode node time (%)")
    ax.legend(ncol=4, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(t) < 4 else -0.2), frameon=False)
    save(fig, out_paths)
    return t


def depth_figure(runs: pd.DataFrame, models: list[str], baseline: str, style: str, out_paths: list[str]
                 ) -> pd.DataFrame:
    """Against context depth: decode tok/s per model, peak RSS with the device ceiling, and the
    decode ratio of each model to the same-active baseline (95% intervals)."""
    from edgemoe.tables import depth_table

    plt.style.use(style)
    t = depth_table(runs, baseline)
    if t.empty:
        raise NoData("depth figure: no depth cells in the run table (config depth.enabled)")
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.4))
    colours = model_colours(model_order(t, models))
    # Several devices, engines, KV cache types or methods: one line style each, named in the legend.
    variant_keys = ["device", "engine", "kv_cache", "method"]
    variants = list(t.groupby(variant_keys, sort=True).groups)
    styles = ["-", "--", ":", "-."]
    for (model, *variant), m in t.groupby(["model", *variant_keys], sort=False):
        m = m.sort_values("depth")
        c, ls = colours[model], styles[variants.index(tuple(variant)) % len(styles)]
        label = model if len(variants) == 1 else f"{model} ({', '.join(map(str, variant))})"
        axes[0].errorbar(m["depth"], m["decode_tok_s"], yerr=[m["decode_tok_s"] - m["decode_lo"], m["decode_hi"] - m["decode_tok_s"]],
                         color=c, ls=ls, marker="o", ms=3, capsize=2, label=label)
        axes[1].plot(m["depth"], m["peak_rss_GiB"], color=c, ls=ls, marker="o", ms=3)
        bad = m[m["status"] != "ok"]
        axes[1].plot(bad["depth"], bad["peak_rss_GiB"], "x", color="crimson", ms=6)
        if model != baseline:
            axes[2].errorbar(m["depth"], m["ratio_to_baseline"], yerr=[m["ratio_to_baseline"] - m["ratio_lo"],
                             m["ratio_hi"] - m["ratio_to_baseline"]], color=c, ls=ls, marker="o", ms=3, capsize=2)
    axes[1].axhline(t["memory_ceiling_GiB"].max(), color="crimson", ls="--", lw=0.8)
    axes[1].annotate("device ceiling", (0, t["memory_ceiling_GiB"].max()), fontsize=6, color="crimson", va="bottom")
    axes[2].axhline(1, color="grey", ls="--", lw=0.8)
    axes[0].set_ylabel("decode tok/s")
    axes[1].set_ylabel("peak RSS (GiB)")
    axes[2].set_ylabel(f"decode tok/s / {baseline}")
    for ax in axes:
        ax.set_xlabel("context depth (tokens)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    save(fig, out_paths)
    return t
