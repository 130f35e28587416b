"""The study's throughput table from the run table: one row per device, model, quant and test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from edgemoe.files import atomic_write_text
from edgemoe import estimates as E
from edgemoe.nodes import CLASSES
from edgemoe.stats import NAN

KEYS = E.GROUP


def _ordered_models(runs: pd.DataFrame, model_order: list[str]) -> list[str]:
    present = list(dict.fromkeys(runs["model"]))
    return [m for m in model_order if m in present] + [m for m in present if m not in model_order]


def throughput_table(runs: pd.DataFrame, baseline: str, model_order: list[str]) -> pd.DataFrame:
    """One row per device, engine, quant, test, weights source and model: prefill and generation
    tok/s and the generation ratio to the same-active dense baseline, as `edgemoe.estimates`
    gives them (with their methods), beside the cell's facts; failed cells keep their row."""
    rows = []
    for kind in (k for k in METHOD_OF_KIND if (runs["kind"] == k).any()):
        rows += _throughput_rows(runs, baseline, model_order, kind)
    return pd.DataFrame(rows)


# where each throughput row's numbers come from (edgemoe/prompt_cells.py for prompt cells)
METHOD_OF_KIND = {"bench": "llama-bench", "prompt": "llama-cli prompts (perf footer)"}


def _method(g: pd.DataFrame, kind: str) -> str:
    """Where a row's numbers come from: its kind's program, or interleaved decode (edgemoe/interleave.py)."""
    block = g["interleave_block"].dropna() if "interleave_block" in g else pd.Series(dtype=float)
    return f"edgemoe-interleave (turns of {int(block.iloc[0])} tokens)" if len(block) else METHOD_OF_KIND[kind]


def _cell_status(g: pd.DataFrame, est: pd.DataFrame, at: dict, model: str) -> dict:
    """A model's rows in one table group: the first failure's status and reason, and the methods
    of its estimates."""
    failed = g[g["status"] != "ok"]
    methods = est[(est["model"] == model) & (est[KEYS] == pd.Series(at)).all(axis=1)]["method"]
    return {"status": "ok" if failed.empty else failed.iloc[0]["status"],
            "status_reason": "" if failed.empty else (failed.iloc[0]["status_reason"] or ""),
            "methods": ";".join(sorted(set(methods))), "failed_cells": int(failed["cell_id"].nunique())}


def _throughput_rows(runs: pd.DataFrame, baseline: str, model_order: list[str], kind: str) -> list[dict]:
    est = E.estimates(runs, baseline, kind)
    rows = []
    bench = runs[runs["kind"] == kind]
    for key, group in bench.groupby(KEYS, sort=True):
        at = dict(zip(KEYS, key))
        for model in _ordered_models(group, model_order):
            g = group[group["model"] == model]
            first = g.iloc[0]
            pp = E.pick(est, "tokens_per_s", **at, model=model, phase="pp")
            tg = E.pick(est, "tokens_per_s", **at, model=model, phase="tg")
            ratio = NAN if model == baseline else E.pick(est, "ratio", **at, model=model, reference=baseline,
                                                          phase="tg")
            energy = E.pick(est, "energy_j_per_token", **at, model=model, phase="tg")
            roof = E.pick(est, "roofline_efficiency", **at, model=model, phase="tg")
            status = _cell_status(g, est, at, model)
            rows.append({
                **at, "model": model, "family": first["model_family"],
                "status": status["status"], "status_reason": status["status_reason"],
                "params_total_B": first["params_total"] / 1e9, "params_active_B": first["params_active"] / 1e9,
                "file_GB": first["gguf_bytes"] / 1e9, "use_mmap": bool(first["use_mmap"]),
                "prefill_tok_s": pp.value, "prefill_lo": pp.lo, "prefill_hi": pp.hi,
                "gen_tok_s": tg.value, "gen_lo": tg.lo, "gen_hi": tg.hi,
                "gen_ratio_to_baseline": ratio.value, "ratio_lo": ratio.lo, "ratio_hi": ratio.hi,
                "roofline_eff": roof.value, "roofline_lo": roof.lo, "roofline_hi": roof.hi,
                "peak_rss_GB": g["peak_rss_bytes"].max() / 1e9,
                "j_per_token": energy.value,
                "temp_peak_c": g["temp_peak_c"].max(),
                "repetitions": int(max(pp.n, tg.n)),  # rounds design: the number of counted rounds
                "design": "rounds" if E.in_rounds(g) else "block",
                "methods": status["methods"],
                "warmup_rows": E.warmup_rows(g),
                "baseline": baseline, "method": _method(g, kind),
            })
    return rows


def _methods(t: pd.DataFrame) -> list[str]:
    """The estimate methods of a table's rows (its ';'-joined `methods` column)."""
    return sorted({m for ms in t.get("methods", []) for m in str(ms).split(";") if m})


def _intervals(t: pd.DataFrame, value: str, lo: str, hi: str, digits: int = 1) -> list[str]:
    return [_interval(*r, digits) for r in zip(t[value], t[lo], t[hi])]


def table_note(t: pd.DataFrame) -> str:
    """The table's caption, from the methods of its estimates (it cannot go stale)."""
    methods = _methods(t)
    return ("Per model, prefill and generation tok/s and 'gen vs baseline' (generation tok/s relative to the "
            "same-active dense baseline on the same device, engine, quant and test); 'roofline eff.' is "
            "generation tok/s over the bandwidth limit. "
            + E.describe(methods, int(t["warmup_rows"].sum()) if "warmup_rows" in t else 0)
            + " Weights 'twin' are shape twins (random weights).")


def _interval(v: float, lo: float, hi: float, digits: int = 1) -> str:
    if pd.isna(v):
        return "–"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def display_table(t: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns: intervals as 'median [lo, hi]', failures spelled out."""
    out = pd.DataFrame({
        "device": t["device"], "model": t["model"], "family": t["family"], "weights": t["weights_source"],
        "quant": t["quant"], "test": t["test"],
        "method": t["method"] if "method" in t else "llama-bench",
        "load": t["use_mmap"].map({True: "mmap", False: "read"}) if "use_mmap" in t else "mmap",
        "params total/active (B)": [f"{a:.2f} / {b:.2f}" for a, b in zip(t["params_total_B"], t["params_active_B"])],
        "file (GB)": t["file_GB"].map(lambda v: f"{v:.2f}"),
        "prefill tok/s": _intervals(t, "prefill_tok_s", "prefill_lo", "prefill_hi"),
        "gen tok/s": _intervals(t, "gen_tok_s", "gen_lo", "gen_hi"),
        "gen vs baseline": [("baseline" if m == b else _interval(v, lo, hi, 3))
                            for m, b, v, lo, hi in zip(t["model"], t["baseline"], t["gen_ratio_to_baseline"],
                                                       t["ratio_lo"], t["ratio_hi"])],
        "roofline eff.": _intervals(t, "roofline_eff", "roofline_lo", "roofline_hi", 2),
        "peak RSS (GB)": t["peak_rss_GB"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "J/token": t["j_per_token"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.3f}"),
        "status": [s if s == "ok" else f"{s.upper()}: {r}" for s, r in zip(t["status"], t["status_reason"])],
    })
    return out


def write_table(t: pd.DataFrame, csv_path: str | Path, md_path: str | Path, tex_path: str | Path) -> None:
    atomic_write_text(csv_path, t.to_csv(index=False, float_format="%.6g"))
    shown = display_table(t)
    atomic_write_text(md_path, table_note(t) + "\n\n" + shown.to_markdown(index=False) + "\n")
    latex = shown.to_latex(index=False, escape=True, column_format="l" * len(shown.columns))
    atomic_write_text(tex_path, "% needs \\usepackage{booktabs}\n" + latex)


def regimes_table(runs: pd.DataFrame, baseline: str, model_order: list[str]) -> pd.DataFrame:
    """Per device, model, base test, load mode and memory ceiling (edgemoe/regimes.py): decode
    tok/s, the ratio to the same-active baseline under the same ceiling and mode, storage bytes read
    per generated token, the cgroup's peak and major faults; a cell killed by the ceiling keeps its
    row with its status."""
    from edgemoe.regimes import regime_columns

    bench = runs[runs["kind"] == "bench"]
    regimes = regime_columns(bench)
    if regimes.empty:
        return pd.DataFrame()
    est = E.estimates(bench, baseline, "bench")
    rows = []
    for r in regimes.to_dict("records"):
        cells = bench[(bench["device"] == r["device"]) & (bench["test"] == r["test"])]
        for (engine, quant, source), group in cells.groupby(["engine", "quant", "weights_source"], sort=True):
            at = {"device": r["device"], "engine": engine, "quant": quant, "test": r["test"], "weights_source": source}
            for model in _ordered_models(group, model_order):
                g = group[group["model"] == model]
                tg = E.pick(est, "tokens_per_s", **at, model=model, phase="tg")
                ratio = NAN if model == baseline else E.pick(est, "ratio", **at, model=model, reference=baseline,
                                                              phase="tg")
                read = E.pick(est, "storage_read_bytes_per_token", **at, model=model, phase="tg")
                peak = E.pick(est, "cgroup_peak_bytes", **at, model=model, phase="tg")
                rows.append({
                    **at, "model": model, "base_test": r["base_test"], "load_mode": r["load_mode"],
                    "ceiling": r["ceiling"], "ceiling_GB": r["ceiling_gb"], "emulated": r["emulated"],
                    "file_GB": g["gguf_bytes"].iloc[0] / 1e9,
                    "gen_tok_s": tg.value, "gen_lo": tg.lo, "gen_hi": tg.hi,
                    "gen_ratio_to_baseline": ratio.value, "ratio_lo": ratio.lo, "ratio_hi": ratio.hi,
                    "read_MB_per_token": read.value / 1e6, "read_lo": read.lo / 1e6, "read_hi": read.hi / 1e6,
                    "cgroup_peak_GB": peak.value / 1e9,
                    "major_faults": g["major_faults"].median() if "major_faults" in g else NAN,
                    "cells": int(g["cell_id"].nunique()), **_cell_status(g, est, at, model),
                    "warmup_rows": E.warmup_rows(g), "baseline": baseline,
                })
    return pd.DataFrame(rows)


def write_regimes_table(t: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    atomic_write_text(csv_path, t.to_csv(index=False, float_format="%.6g"))
    if t.empty:
        atomic_write_text(md_path, "No cell of the run table ran under an emulated memory ceiling.\n")
        return
    shown = pd.DataFrame({
        "device": t["device"], "model": t["model"], "test": t["base_test"], "load": t["load_mode"],
        "ceiling": t["ceiling"], "file (GB)": t["file_GB"].map(lambda v: f"{v:.2f}"),
        "decode tok/s": _intervals(t, "gen_tok_s", "gen_lo", "gen_hi", 2),
        "vs baseline": [("baseline" if m == b else _interval(v, lo, hi, 3))
                        for m, b, v, lo, hi in zip(t["model"], t["baseline"], t["gen_ratio_to_baseline"],
                                                   t["ratio_lo"], t["ratio_hi"])],
        "read MB/token": _intervals(t, "read_MB_per_token", "read_lo", "read_hi", 1),
        "cgroup peak (GB)": t["cgroup_peak_GB"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "failed": [f"{f}/{c} {s.upper()}: {r}" if f else "" for f, c, s, r in
                   zip(t["failed_cells"], t["cells"], t["status"], t["status_reason"])],
    })
    note = ("Memory regimes (edgemoe/regimes.py): each cell ran llama-bench in a memory cgroup of the ceiling "
            "(page cache counted, the model's pages evicted first; 'host': no limit, still in a cgroup), with the "
            "weights mapped (mmap) or read into memory. 'vs baseline': decode tok/s relative to the same-active "
            "dense baseline under the same ceiling and load mode; 'read MB/token': bytes read from storage during "
            "the timed repetitions per generated token. " + E.describe(_methods(t), int(t["warmup_rows"].sum()))
            + " Weights 'twin' are shape twins (random weights).")
    atomic_write_text(md_path, note + "\n\n" + shown.to_markdown(index=False) + "\n")


def moe_effect_table(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per MoE member with both dense brackets (edgemoe/counterfactuals.py), device, engine, quant,
    test and phase: the three members' tok/s, the total-tracking index and, for a stand-in M@moe,
    its speed against the original twin M (estimates only; `methods` names how)."""
    est = E.estimates(runs, baseline, kind="bench")
    rows = []
    for r in est[est["quantity"] == "tracking_index"].to_dict("records"):
        at = {k: r[k] for k in KEYS}
        active, total = r["reference"].split("|")
        tok = {name: E.pick(est, "tokens_per_s", **at, model=m, phase=r["phase"])
               for name, m in (("moe", r["model"]), ("active", active), ("total", total))}
        original = r["model"].removesuffix("@moe") if r["model"].endswith("@moe") else None
        standin = (E.pick(est, "ratio", **at, model=r["model"], reference=original, phase=r["phase"])
                   if original else NAN)
        facts = runs[(runs["model"] == r["model"]) & (runs["kind"] == "bench")].dropna(subset=["ffn_width"]).iloc[0]
        rows.append({**at, "phase": r["phase"], "model": r["model"], "dense_active": active, "dense_total": total,
                     "experts": int(facts["ffn_experts"]), "experts_used": int(facts["ffn_experts_used"]),
                     "expert_width": int(facts["ffn_width"]),
                     "params_total_B": facts["params_total"] / 1e9, "params_active_B": facts["params_active"] / 1e9,
                     **{f"{k}_tok_s": v.value for k, v in tok.items()},
                     **{f"{k}_lo": v.lo for k, v in tok.items()}, **{f"{k}_hi": v.hi for k, v in tok.items()},
                     "index": r["value"], "index_lo": r["lo"], "index_hi": r["hi"], "rounds": r["n"],
                     "standin_vs": original, "standin_ratio": standin.value, "standin_lo": standin.lo,
                     "standin_hi": standin.hi,
                     "methods": ";".join(sorted({r["method"], *est[est["model"] == r["model"]]["method"]} - {
                         "roofline-efficiency"}))})
    return pd.DataFrame(rows)


def moe_effect_note(t: pd.DataFrame) -> str:
    methods = _methods(t)
    return ("The MoE effect, isolated: each MoE member beside two dense counterfactuals that differ from it in "
            "the FFN only (one dense FFN of its active width, and of its total width; edgemoe/counterfactuals.py). "
            "index 0: the MoE costs what its active parameters cost; 1: what its total parameters cost. "
            "'stand-in vs original': M@moe (M in the llama architecture, which has both forms) against M's own "
            "twin, paired like every ratio. " + E.describe(methods))


def write_moe_effect_table(t: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    atomic_write_text(csv_path, t.to_csv(index=False, float_format="%.6g"))
    if t.empty:
        atomic_write_text(md_path, moe_effect_note(t) + "\n\n(no MoE member with both dense brackets)\n")
        return
    shown = pd.DataFrame({
        "device": t["device"], "quant": t["quant"], "test": t["test"], "model": t["model"],
        "experts (used)": [f"{e} ({k})" for e, k in zip(t["experts"], t["experts_used"])],
        **{f"tok/s {name}": _intervals(t, f"{k}_tok_s", f"{k}_lo", f"{k}_hi")
           for name, k in (("MoE", "moe"), ("dense-active", "active"), ("dense-total", "total"))},
        "index": _intervals(t, "index", "index_lo", "index_hi", 3),
        "stand-in vs original": [("–" if o is None or pd.isna(o) else f"{_interval(v, lo, hi, 3)} vs {o}")
                                 for o, v, lo, hi in zip(t["standin_vs"], t["standin_ratio"], t["standin_lo"],
                                                         t["standin_hi"])],
        "rounds": t["rounds"],
    })
    atomic_write_text(md_path, moe_effect_note(t) + "\n\n" + shown.to_markdown(index=False) + "\n")


PROVENANCE_COLUMNS = ["engine_commit", "patches_sha256", "build_flags", "cxx_compiler", "host_cpu",
                      "host_logical_cpus", "host_os", "host_kernel", "weights_source", "twin_seed",
                      "hf_repo", "hf_revision", "gguf_sha256", "gguf_bytes", "use_mmap", "n_threads"]


def provenance_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Where each cell's numbers come from: one row per device, engine, model and quant."""
    keys = ["device", "engine", "model", "quant"]
    g = runs.groupby(keys, sort=True)
    out = g[PROVENANCE_COLUMNS].agg(lambda s: "; ".join(sorted({str(v) for v in s.dropna()})))
    out["cells"] = g["cell_id"].nunique()
    out["rows"] = g.size()
    out["first_cell_utc"] = g["cell_start_utc"].min()
    out["last_cell_utc"] = g["cell_end_utc"].max()
    return out.reset_index()


NODE_CLASSES = CLASSES  # edgemoe/nodes.py defines them


def breakdown_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Where decode time goes (profile cells): per device, model and quant, the mean over decode
    steps of each node class's share of the step's node time, the coverage (node time / wall time),
    and the routing share of MoE-block time, routing / (routing + expert), as estimates.step_mean
    gives it (mean over steps, 95% bootstrap interval over steps)."""
    prof = runs[(runs["kind"] == "profile") & (runs["status"] == "ok")]
    rows = []
    for (device, engine, model, quant), g in prof.groupby(["device", "engine", "model", "quant"], sort=False):
        ns = g[[f"node_ns_{c}" for c in NODE_CLASSES]].astype(float)
        share = ns.div(ns.sum(axis=1), axis=0).mean()
        moe = ns["node_ns_routing"] + ns["node_ns_expert"]
        per_step = (ns["node_ns_routing"] / moe.where(moe > 0)).dropna()
        routing = E.step_mean(per_step)
        rows.append({"device": device, "engine": engine, "model": model, "family": g["model_family"].iloc[0],
                     "quant": quant, "steps": len(g), "backend": g["backend"].iloc[0],
                     **{f"share_{c}": share[f"node_ns_{c}"] for c in NODE_CLASSES},
                     "coverage_median": g["node_coverage"].median(),
                     "routing_share_of_moe": routing.value, "routing_lo": routing.lo, "routing_hi": routing.hi,
                     "method": "steps-mean",
                     "decode_tok_s_median": g["tokens_per_s"].median()})
    return pd.DataFrame(rows)


def write_breakdown(t: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    atomic_write_text(csv_path, t.to_csv(index=False, float_format="%.5g"))
    shown = pd.DataFrame({
        "device": t["device"], "model": t["model"], "quant": t["quant"], "steps": t["steps"],
        **{c: (t[f"share_{c}"] * 100).map(lambda v: f"{v:.1f}%") for c in NODE_CLASSES},
        "coverage": t["coverage_median"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
        "routing / MoE block": [_interval(v * 100, lo * 100, hi * 100, 1) + ("%" if not pd.isna(v) else "")
                                for v, lo, hi in zip(t["routing_share_of_moe"], t["routing_lo"], t["routing_hi"])],
    }) if len(t) else pd.DataFrame()
    note = ("Share of decode node time per class (mean over profiled decode steps); coverage = node time / "
            "wall time per step (median); routing / MoE block = routing / (routing + expert compute), mean "
            "over steps with a 95% bootstrap interval.\n\n")
    atomic_write_text(md_path, note + (shown.to_markdown(index=False) if len(shown) else "(no profile cells)") + "\n")


def depth_table(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Decode speed and memory against context depth (depth cells): per device, model, quant and
    depth, decode tok/s (median over decode steps, 95% interval), the prompt's prefill tok/s, peak
    RSS, the KV cache llama.cpp reports beside the size computed from the architecture, and the
    decode ratio to the same-active baseline at that depth."""
    from edgemoe.depth import CACHE_SIZE_VS_F16, parse_test_name

    d = runs[runs["kind"] == "depth"]
    # depth, KV cache type and method from the cell's test name: failed cells too
    parsed = pd.DataFrame([parse_test_name(t) for t in d["test"]], index=d.index,
                          columns=["depth", "kv_cache", "method"])
    d = d.assign(**parsed)
    est = E.estimates(d, baseline, "depth")
    rows = []
    for (_, _, _, kv_cache, method, depth), g in d.groupby(["device", "engine", "quant", "kv_cache", "method",
                                                               "depth"], sort=True):
        for model, m in g.groupby("model", sort=False):
            at = {k: m[k].iloc[0] if k in m else None for k in KEYS}  # one test (depth, cache, method) and weights source
            ok = m[m["status"] == "ok"]
            pp = E.pick(est, "tokens_per_s", **at, model=model, phase="pp")
            tg = E.pick(est, "tokens_per_s", **at, model=model, phase="tg")
            ratio = NAN if model == baseline else E.pick(est, "ratio", **at, model=model, reference=baseline,
                                                          phase="tg")
            n_ctx = ok["n_ctx"].max() if len(ok) else np.nan
            rows.append({
                "device": at["device"], "engine": at["engine"], "model": model, "quant": at["quant"],
                "kv_cache": kv_cache,
                "method": method if method != "auto" or "depth_method" not in m else
                ",".join(sorted(m["depth_method"].dropna().unique())) or "auto",
                "depth": int(depth),
                "status": "ok" if (m["status"] == "ok").all() else m.loc[m["status"] != "ok", "status"].iloc[0],
                "decode_tok_s": tg.value, "decode_lo": tg.lo, "decode_hi": tg.hi,
                "prefill_tok_s": pp.value,
                "ratio_to_baseline": ratio.value, "ratio_lo": ratio.lo, "ratio_hi": ratio.hi,
                "peak_rss_GiB": m["peak_rss_bytes"].max() / 2**30,
                "memory_ceiling_GiB": m["memory_ceiling_bytes"].max() / 2**30,
                "n_ctx": n_ctx,
                "kv_cache_MiB_reported": ok["kv_cache_bytes"].max() / 2**20 if len(ok) else np.nan,
                "kv_cache_MiB_computed": (m["kv_bytes_per_token"].max() * n_ctx * CACHE_SIZE_VS_F16[kv_cache] / 2**20)
                if len(ok) else np.nan,
                "methods": ";".join(sorted(set(est.loc[est["model"] == model, "method"]))),
            })
    return pd.DataFrame(rows)
