"""The study's figures from the run table (PNG and PDF, one colour per model throughout)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


def _bench(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["kind"] == "bench"]


def _order(runs: pd.DataFrame, models: list[str]) -> list[str]:
    present = set(runs["model"])
    return [m for m in models if m in present] + sorted(present - set(models))


def _device_panels(runs: pd.DataFrame, models: list[str], style: str, order_models: list[str] | None = None):
    """The common start of a one-panel-per-device figure: style, bench rows, model order and
    colours (colours by the full order, so a model keeps its colour when others are left out)."""
    plt.style.use(style)
    bench = _bench(runs)
    full = _order(bench, models)
    order = order_models if order_models is not None else full
    devices = sorted(bench["device"].unique())
    fig, axes = plt.subplots(1, len(devices), squeeze=False, figsize=(3.4 * len(devices), 0.9 + 0.35 * len(order)))
    return bench, order, model_colours(full), list(zip(axes[0], devices)), fig


def gap_figure(runs: pd.DataFrame, models: list[str], baseline: str, style: str, out_paths: list[str]) -> None:
    """Generation throughput of each model relative to the same-active dense baseline, per device,
    with the bootstrap interval of the ratio; 1 = as fast as the baseline."""
    from edgemoe.stats import ratio_ci

    others = [m for m in _order(_bench(runs), models) if m != baseline]
    bench, order, colours, panels, fig = _device_panels(runs, models, style, others)
    for ax, device in panels:
        d = bench[(bench["device"] == device) & (bench["phase"] == "tg") & (bench["status"] == "ok")]
        base = d.loc[d["model"] == baseline, "tokens_per_s"]
        for i, model in enumerate(order):
            r = ratio_ci(d.loc[d["model"] == model, "tokens_per_s"], base)
            if pd.isna(r.value):
                ax.annotate(" not measured / failed", (1, i), va="center", fontsize=7, color="crimson")
                continue
            ax.errorbar(r.value, i, xerr=[[r.value - r.lo], [r.hi - r.value]], fmt="o", color=colours[model], capsize=3)
            ax.annotate(f"{(r.value - 1) * 100:+.0f}%", (r.hi, i), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7)
        ax.axvline(1, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_xlabel(f"generation tok/s relative to {baseline}")
        ax.set_title(device, loc="left")
    fig.tight_layout()
    save(fig, out_paths)


def memory_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> None:
    """Peak RSS of the benchmark process and model file size per model, against the device's
    memory ceiling; failed cells marked with their status."""
    bench, order, colours, panels, fig = _device_panels(runs, models, style)
    for ax, device in panels:
        d = bench[bench["device"] == device]
        ceiling = d["memory_ceiling_bytes"].max() / 2**30
        for i, model in enumerate(order):
            m = d[d["model"] == model]
            if m.empty:
                continue
            ax.barh(i, m["peak_rss_bytes"].max() / 2**30, color=colours[model], height=0.6)
            ax.plot(m["gguf_bytes"].max() / 2**30, i, marker="|", ms=12, color="black")
            bad = m[m["status"] != "ok"]
            if not bad.empty:
                ax.annotate(f" {bad.iloc[0]['status'].upper()}", (m["peak_rss_bytes"].max() / 2**30, i),
                            va="center", fontsize=7, color="crimson")
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


def energy_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> None:
    """Net joules per generated token (idle baseline subtracted); a device without an energy
    counter says so instead of showing zeros."""
    bench, order, colours, panels, fig = _device_panels(runs, models, style)
    for ax, device in panels:
        d = bench[(bench["device"] == device) & (bench["phase"] == "tg")]
        e = d.dropna(subset=["energy_j_per_token_net"])
        if e.empty:
            import textwrap

            reasons = sorted(set(d["energy_reason"].dropna())) or ["no generation cells"]
            text = "\n".join(textwrap.fill(r, 48) for r in reasons[:2])
            ax.text(0.5, 0.5, "energy not measured on this device:\n" + text, ha="center", va="center", fontsize=6,
                    transform=ax.transAxes)
            ax.set_axis_off()
        else:
            for i, model in enumerate(order):
                v = e.loc[e["model"] == model, "energy_j_per_token_net"]
                if len(v):
                    est = median_ci(v)
                    ax.barh(i, est.value, color=colours[model], height=0.6)
                    ax.errorbar(est.value, i, xerr=[[est.value - est.lo], [est.hi - est.value]], color="black", capsize=2)
            ax.set_yticks(range(len(order)), order)
            ax.set_ylim(len(order) - 0.5, -0.5)
            ax.set_xlabel("energy per generated token (J, net of idle)")
        ax.set_title(device, loc="left")
    fig.tight_layout()
    save(fig, out_paths)


def roofline_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> None:
    """Generation tok/s against weight bytes read per token (left) and against active and total
    parameters (right), with the device's measured read-bandwidth roofline: if cost tracked active
    parameters, the MoE would sit with the dense models of its active size."""
    import numpy as np

    plt.style.use(style)
    bench = _bench(runs)
    order = _order(bench, models)
    colours = model_colours(order)
    devices = sorted(bench["device"].unique())
    fig, axes = plt.subplots(len(devices), 2, squeeze=False, figsize=(6.8, 2.6 * len(devices)))
    for row, device in enumerate(devices):
        d = bench[(bench["device"] == device) & (bench["phase"] == "tg") & (bench["status"] == "ok")]
        ax_b, ax_p = axes[row]
        for model in order:
            m = d[d["model"] == model]
            if m.empty:
                continue
            est = median_ci(m["tokens_per_s"])
            gb = m["weight_bytes_per_token"].max() / 1e9
            ax_b.errorbar(gb, est.value, yerr=[[est.value - est.lo], [est.hi - est.value]], fmt="o",
                          color=colours[model], label=model, capsize=2)
            ax_p.plot(m["params_active"].max() / 1e9, est.value, "o", color=colours[model])
            ax_p.plot(m["params_total"].max() / 1e9, est.value, "o", mfc="none", color=colours[model])
            if m["params_active"].max() != m["params_total"].max():
                ax_p.annotate("", (m["params_total"].max() / 1e9, est.value), (m["params_active"].max() / 1e9, est.value),
                              arrowprops=dict(arrowstyle="-", color=colours[model], ls=":"))
        bw = d["device_read_gbs"].dropna()
        if len(bw) and d["weight_bytes_per_token"].notna().any():
            gb = d["weight_bytes_per_token"].dropna() / 1e9
            top = max(d["tokens_per_s"].max() * 1.4, 1)
            xs = np.linspace(max(gb.min() * 0.7, bw.median() / top), gb.max() * 1.3, 100)
            ax_b.plot(xs, bw.median() / xs, color="grey", ls="--", lw=0.8,
                      label=f"roofline: read bandwidth {bw.median():.1f} GB/s / bytes")
        ax_b.set_xlabel("weight bytes read per token (GB)")
        ax_b.set_ylabel("generation tok/s")
        ax_b.set_ylim(bottom=0, top=max(d["tokens_per_s"].max() * 1.4, 1) if len(d) else 1)
        ax_b.set_title(device, loc="left")
        ax_b.legend(fontsize=6, loc="upper right")
        ax_p.set_xlabel("parameters (B): filled = active, open = total")
        ax_p.set_ylabel("generation tok/s")
        ax_p.set_ylim(bottom=0)
    fig.tight_layout()
    save(fig, out_paths)


CLASS_COLOURS = {"routing": "#d62728", "expert": "#ff7f0e", "attention": "#1f77b4", "norm": "#9467bd",
                 "dense_ffn": "#2ca02c", "lm_head": "#8c564b", "noop": "#c7c7c7", "other": "#7f7f7f"}


def breakdown_figure(runs: pd.DataFrame, models: list[str], style: str, out_paths: list[str]) -> None:
    """Where decode time goes: stacked share of node time per class, one bar per model and device;
    the MoE bars are annotated with the routing share of MoE-block time and its interval."""
    from edgemoe.tables import NODE_CLASSES, breakdown_table

    plt.style.use(style)
    t = breakdown_table(runs)
    fig, ax = plt.subplots(figsize=(6.8, 0.9 + 0.35 * max(len(t), 1)))
    if t.empty:
        ax.text(0.5, 0.5, "no profile cells in the run table", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        save(fig, out_paths)
        return
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


def depth_figure(runs: pd.DataFrame, models: list[str], baseline: str, style: str, out_paths: list[str]) -> None:
    """Against context depth: decode tok/s per model, peak RSS with the device ceiling, and the
    decode ratio of each model to the same-active baseline (95% intervals)."""
    from edgemoe.tables import depth_table

    plt.style.use(style)
    t = depth_table(runs, baseline)
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.4))
    if t.empty:
        for ax in axes:
            ax.set_axis_off()
        axes[1].text(0.5, 0.5, "no depth cells in the run table (config depth.enabled)", ha="center", va="center",
                     transform=axes[1].transAxes)
        save(fig, out_paths)
        return
    colours = model_colours(_order(t, models))
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
