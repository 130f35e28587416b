"""The one place where medians, ratios and their intervals are computed from the run table.

Run table in, tidy estimates out: one row per (quantity, device, engine, quant, test,
weights_source, model, reference, phase) with value, lo, hi, n, method and design. Tables format
these rows, figures plot them (and write the rows they draw beside the figure), report captions are
written from the `method` of the rows they show (`describe`), so no two outputs can disagree.

Designs, read off the rows themselves:
- rounds (rows carry a round number): a model's throughput is the median over rounds of each
  round's median over its repetitions; a ratio is the median over rounds of the two models'
  round medians divided inside the round (both measured minutes apart on the same machine state).
- block (no round): medians over repetitions; a ratio of medians.

Rows marked `warmup` (the rounds' warm-up pass) and failed rows never enter an estimate.
Interval methods (`INTERVALS`): distribution-free order statistics over rounds (exact coverage
whatever the distribution, wide with few rounds), or a two-level bootstrap that resamples rounds
and then repetitions inside each resampled round (uses every repetition; its coverage on this
VM's noise is checked by `tools/coverage_simulation.py`). Block designs use the percentile
bootstrap over repetitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from edgemoe.estimate_methods import METHODS  # every method's one-sentence description
from edgemoe.stats import NAN, N_BOOT, SEED, Estimate, median_ci, median_ci_exact, ratio_ci, signed_rank_ci

GROUP = ["device", "engine", "quant", "test", "weights_source"]
COLUMNS = ["quantity", *GROUP, "model", "reference", "phase", "value", "lo", "hi", "n", "method", "design"]
INTERVALS = ("order-statistic", "signed-rank", "two-level-bootstrap")
# Tables and figures ask for "auto": the order-statistic interval where it is finite (at least 6
# rounds at 95%), else the two-level bootstrap; the stopping rule names its interval explicitly.
MIN_ORDER_STATISTIC_ROUNDS = 6


def resolve_interval(interval: str, n_rounds: int) -> str:
    if interval == "auto":
        return "order-statistic" if n_rounds >= MIN_ORDER_STATISTIC_ROUNDS else "two-level-bootstrap"
    return interval


# ---- rows ------------------------------------------------------------------------------------
def usable(runs: pd.DataFrame, kind: str | None = "bench", phase: str | None = None) -> pd.DataFrame:
    """The rows an estimate may use: status ok, not warm-up, of one record kind and phase."""
    d = runs[runs["status"] == "ok"]
    if kind is not None and "kind" in d.columns:
        d = d[d["kind"] == kind]
    if "warmup" in d.columns:
        d = d[d["warmup"].fillna(False).astype(bool) == False]  # noqa: E712 (nullable column)
    if phase is not None:
        d = d[d["phase"] == phase]
    return d


def warmup_rows(runs: pd.DataFrame) -> int:
    """How many rows are warm-up (recorded, never estimated): the table caption says so."""
    return int(runs["warmup"].fillna(False).astype(bool).sum()) if "warmup" in runs.columns else 0


def in_rounds(runs: pd.DataFrame) -> bool:
    """Do these rows come from the rounds design (a round number on some row)?"""
    return "round" in runs.columns and runs["round"].notna().any()


def _keys(d: pd.DataFrame) -> list[str]:
    return [k for k in GROUP if k in d.columns]


def per_round(df: pd.DataFrame, phase: str | None = None, value: str = "tokens_per_s") -> pd.DataFrame:
    """One row per (group, model, phase, round): the median of `value` over the round cell's
    repetitions (ok, non-warm-up rows with a round number)."""
    d = usable(df, kind=None, phase=phase)
    d = d[d["round"].notna()] if "round" in d.columns else d.iloc[0:0]
    keys = _keys(d) + ["model", "phase", "round"]
    out = d.groupby(keys, sort=True)[value].median().reset_index()
    out["round"] = out["round"].astype(int)
    return out


def _by_round(values: pd.DataFrame, value: str = "tokens_per_s") -> dict[int, np.ndarray]:
    return {int(k): g[value].to_numpy(dtype=float) for k, g in values.groupby("round", sort=True)}


# ---- interval methods -------------------------------------------------------------------------
def _resampled_round_medians(rounds: Sequence[np.ndarray], pick: np.ndarray, rng) -> np.ndarray:
    """For each entry of `pick` (a round index), the median of a resample of that round's values."""
    sizes = np.array([r.size for r in rounds])
    pad = np.full((len(rounds), sizes.max()), np.nan)
    for i, r in enumerate(rounds):
        pad[i, : r.size] = r
    width = sizes.max()
    n_of = sizes[pick][..., None]
    idx = np.floor(rng.random((*pick.shape, width)) * n_of).astype(int)
    vals = pad[pick[..., None], idx]
    if (sizes == width).all():
        return np.median(vals, axis=-1)
    vals[np.arange(width) >= n_of] = np.nan  # a round with fewer repetitions resamples only its own
    return np.nanmedian(vals, axis=-1)


def two_level_bootstrap(rounds_num: Sequence[np.ndarray], rounds_den: Sequence[np.ndarray] | None = None, *,
                        conf: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of the median over rounds of per-round medians (or of per-round median
    ratios num/den, paired by round): resample rounds with replacement, then each chosen round's
    repetitions with replacement (num and den independently), recompute the statistic."""
    rng = np.random.default_rng(seed)
    n = len(rounds_num)
    pick = rng.integers(0, n, (n_boot, n))
    per = _resampled_round_medians(rounds_num, pick, rng)
    if rounds_den is not None:
        per = per / _resampled_round_medians(rounds_den, pick, rng)
    stats = np.median(per, axis=1)
    q = (1 - conf) / 2
    return float(np.quantile(stats, q)), float(np.quantile(stats, 1 - q))


def round_median(rounds: dict[int, np.ndarray], interval: str = "order-statistic") -> Estimate:
    """Median over rounds of each round's median, with the chosen interval over rounds."""
    meds = [float(np.median(v)) for v in rounds.values() if v.size]
    if interval == "two-level-bootstrap" and len(meds) >= 2:
        lo, hi = two_level_bootstrap([v for v in rounds.values() if v.size])
        return Estimate(float(np.median(meds)), lo, hi, len(meds))
    return signed_rank_ci(meds) if interval == "signed-rank" else median_ci_exact(meds)


def paired_ratio(num: dict[int, np.ndarray], den: dict[int, np.ndarray], interval: str = "order-statistic"
                 ) -> Estimate:
    """The paired comparison of A (num) against B (den) measured in the same rounds: the median over
    rounds of median(A's repetitions) / median(B's repetitions) in that round, with the chosen
    interval over rounds. Rounds where either side has no value are left out. Used by every A/B
    comparison of the project (models, engines, twin fidelity, depth methods, harness overhead)."""
    ks = [k for k in num if k in den and num[k].size and den[k].size]
    if not ks:
        return NAN
    ratios = [float(np.median(num[k]) / np.median(den[k])) for k in ks]
    if interval == "two-level-bootstrap" and len(ks) >= 2:
        lo, hi = two_level_bootstrap([num[k] for k in ks], [den[k] for k in ks])
        return Estimate(float(np.median(ratios)), lo, hi, len(ks))
    if interval not in INTERVALS:
        raise ValueError(f"interval {interval!r}; allowed: {', '.join(INTERVALS)}")
    return signed_rank_ci(ratios) if interval == "signed-rank" else median_ci_exact(ratios)


def paired_values(df: pd.DataFrame, num_model: str, den_model: str, phase: str = "tg") -> np.ndarray:
    """The per-round ratios of round medians behind a rounds ratio, in round order."""
    r = per_round(df, phase)
    w = r.pivot_table(index="round", columns="model", values="tokens_per_s", aggfunc="median")
    if num_model not in w.columns or den_model not in w.columns:
        return np.array([], dtype=float)
    both = w[[num_model, den_model]].dropna()
    return (both[num_model] / both[den_model]).to_numpy(dtype=float)


def halfwidth(e: Estimate | pd.Series | dict) -> float:
    """The interval's largest distance from the value, relative to it (0.02 = within +-2%)."""
    value, lo, hi, n = (e.value, e.lo, e.hi, e.n) if isinstance(e, Estimate) else (e["value"], e["lo"], e["hi"], e["n"])
    if not np.isfinite(value) or value == 0 or n < 2:
        return float("inf")
    return float(max(hi - value, value - lo) / abs(value))


# ---- estimates -------------------------------------------------------------------------------
def _row(quantity, key, keys, model, reference, phase, e: Estimate, method, design) -> dict:
    return {"quantity": quantity, **{k: None for k in GROUP}, **dict(zip(keys, key)), "model": model,
            "reference": reference, "phase": phase, "value": e.value, "lo": e.lo, "hi": e.hi, "n": e.n,
            "method": method, "design": design}


def medians(runs: pd.DataFrame, kind: str = "bench", value: str = "tokens_per_s", quantity: str = "tokens_per_s",
            interval: str = "order-statistic") -> pd.DataFrame:
    """Per (group, model, phase): the median of `value` with its interval (see the module doc)."""
    d = usable(runs, kind).dropna(subset=[value])
    keys = _keys(d)
    rows = []
    for key, g in d.groupby(keys + ["model", "phase"], sort=True):
        *gkey, model, phase = key
        if in_rounds(g):
            by_round = _by_round(g, value)
            iv = resolve_interval(interval, len(by_round))
            e, method, design = round_median(by_round, iv), f"rounds-median/{iv}", "rounds"
        else:
            e, method, design = median_ci(g[value]), "block-median", "block"
        rows.append(_row(quantity, gkey, keys, model, None, phase, e, method, design))
    return pd.DataFrame(rows, columns=COLUMNS)


def ratios(runs: pd.DataFrame, pairs: Iterable[tuple[str, str]], kind: str = "bench", phase: str = "tg",
           interval: str = "order-statistic") -> pd.DataFrame:
    """Per group holding the phase and per (num, den) pair: num's tok/s relative to den's, paired
    inside rounds in the rounds design, a ratio of medians in the block design."""
    d = usable(runs, kind, phase)
    keys = _keys(d)
    pairs = list(pairs)
    # the models each group ran at all (any status): a pair one of whose models a test does not run
    # (a test's `models`) is no pair there; one whose cells all failed is, and cannot be estimated
    scope = runs[runs["kind"] == kind] if kind and "kind" in runs.columns else runs
    ran = {k if isinstance(k, tuple) else (k,): set(g["model"]) for k, g in scope.groupby(keys)} if keys else {}
    rows = []
    for key, g in (d.groupby(keys, sort=True) if keys else [((), d)]):
        key = key if isinstance(key, tuple) else (key,)
        rounds = in_rounds(g)
        for num, den in pairs:
            a, b = g[g["model"] == num], g[g["model"] == den]
            if (a.empty and b.empty) or (keys and not {num, den} <= ran.get(key, set())):
                continue
            if rounds:
                by_a, by_b = _by_round(a[a["round"].notna()]), _by_round(b[b["round"].notna()])
                iv = resolve_interval(interval, len(set(by_a) & set(by_b)))
                e, method, design = paired_ratio(by_a, by_b, iv), f"rounds-ratio/{iv}", "rounds"
            else:
                e, method, design = ratio_ci(a["tokens_per_s"], b["tokens_per_s"]), "block-ratio", "block"
            rows.append(_row("ratio", key, keys, num, den, phase, e, method, design))
    return pd.DataFrame(rows, columns=COLUMNS)


def baseline_pairs(runs: pd.DataFrame, baseline: str, kind: str = "bench") -> list[tuple[str, str]]:
    """Every other model of the rows against the baseline."""
    present = list(dict.fromkeys(runs.loc[runs["kind"] == kind, "model"])) if "kind" in runs.columns else []
    return [(m, baseline) for m in present if m != baseline] if baseline in present else []


def estimates(runs: pd.DataFrame, baseline: str, kind: str = "bench", interval: str = "auto") -> pd.DataFrame:
    """Every estimate the tables and figures of one record kind show: tok/s per model and phase,
    the decode and prefill ratios to the baseline, and net joules per generated token."""
    tok_s = medians(runs, kind, interval=interval)
    parts = [tok_s, roofline_efficiency(runs, tok_s, kind),
             ratios(runs, baseline_pairs(runs, baseline, kind), kind, "tg", interval),
             ratios(runs, baseline_pairs(runs, baseline, kind), kind, "pp", interval)]
    triples = tracking_triples(runs[runs["kind"] == kind]) if "kind" in runs.columns else []
    parts += [tracking_index(runs, triples, kind, phase) for phase in ("tg", "pp")]
    parts += [ratios(runs, standin_pairs(runs), kind, phase, interval) for phase in ("tg", "pp")]
    if "energy_j_per_token_net" in runs.columns:
        parts.append(medians(runs[runs["phase"] == "tg"], kind, "energy_j_per_token_net", "energy_j_per_token",
                             interval))
    for value in ("storage_read_bytes_per_token", "cgroup_peak_bytes"):  # memory regimes (edgemoe/regimes.py)
        if value in runs.columns and runs[value].notna().any():
            parts.append(medians(runs, kind, value, value, interval))
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


# ---- the MoE effect (edgemoe/counterfactuals.py) -------------------------------------------------
FFN_FACTS = ["derived_from", "ffn_experts", "ffn_experts_used", "ffn_width"]


def tracking_triples(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(MoE, dense-active, dense-total) per MoE model whose two dense brackets are in the rows:
    dense counterfactuals of the same base with the MoE's active FFN width (used x width) and its
    total width (experts x width). From the records alone (no config): released data has them."""
    if not set(FFN_FACTS) <= set(runs.columns):
        return []
    facts = runs.dropna(subset=["ffn_width"]).drop_duplicates("model").set_index("model")
    dense = facts[(facts["ffn_experts"] == 0) & facts["derived_from"].notna()]
    out = []
    for m, f in facts[facts["ffn_experts"] > 0].iterrows():
        base = f["derived_from"] if isinstance(f["derived_from"], str) else m
        brackets = dense[dense["derived_from"] == base]
        active = brackets.index[brackets["ffn_width"] == f["ffn_experts_used"] * f["ffn_width"]]
        total = brackets.index[brackets["ffn_width"] == f["ffn_experts"] * f["ffn_width"]]
        if len(active) and len(total) and active[0] != total[0]:
            out.append((m, active[0], total[0]))
    return out


def standin_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(M@moe, M): each stand-in MoE (M in an architecture with both forms) against the original."""
    present = set(runs["model"])
    return [(f"{m}@moe", m) for m in sorted(present) if f"{m}@moe" in present]


def _index(t_moe, t_active, t_total):
    return (t_moe - t_active) / (t_total - t_active)


def tracking_index(runs: pd.DataFrame, triples: Iterable[tuple[str, str, str]], kind: str = "bench",
                   phase: str = "tg") -> pd.DataFrame:
    """Per group and triple: where the MoE's per-token time sits between its dense brackets'
    (0: it costs what its active parameters cost, 1: what its total costs); `reference` names the
    brackets as 'active|total'."""
    d = usable(runs, kind, phase)
    keys = _keys(d)
    rows = []
    for key, g in (d.groupby(keys, sort=True) if keys else [((), d)]):
        key = key if isinstance(key, tuple) else (key,)
        for moe, active, total in triples:
            members = [g[g["model"] == x] for x in (moe, active, total)]
            if any(m.empty for m in members):
                continue
            if in_rounds(g):
                by = [_by_round(m[m["round"].notna()]) for m in members]
                ks = [k for k in by[0] if all(k in b and b[k].size for b in by)]
                per = [_index(*(1 / np.median(b[k]) for b in by)) for k in ks]
                e, method, design = median_ci_exact(per), "rounds-index/order-statistic", "rounds"
            else:
                xs = [m["tokens_per_s"].dropna().to_numpy(dtype=float) for m in members]
                value = _index(*(1 / np.median(x) for x in xs))
                rng = np.random.default_rng(SEED)
                boot = _index(*(1 / np.median(x[rng.integers(0, x.size, (N_BOOT, x.size))], axis=1) for x in xs))
                lo, hi = np.quantile(boot, [0.025, 0.975])
                e, method, design = Estimate(float(value), float(lo), float(hi), int(min(x.size for x in xs))), \
                    "block-index", "block"
            rows.append(_row("tracking_index", key, keys, moe, f"{active}|{total}", phase, e, method, design))
    return pd.DataFrame(rows, columns=COLUMNS)


def roofline_efficiency(runs: pd.DataFrame, tok_s: pd.DataFrame, kind: str = "bench") -> pd.DataFrame:
    """Decode tok/s estimates (rows of `medians`) over each model's bandwidth limit, where the
    records carry the device's read bandwidth and the weight bytes read per token."""
    need = {"device_read_gbs", "weight_bytes_per_token"}
    d = usable(runs, kind, "tg")
    if not need <= set(d.columns) or d.empty:
        return pd.DataFrame(columns=COLUMNS)
    keys = _keys(d)
    facts = d.groupby(keys + ["model"]).agg(bw=("device_read_gbs", "median"),
                                           wbpt=("weight_bytes_per_token", "max")).reset_index()
    t = tok_s[(tok_s["quantity"] == "tokens_per_s") & (tok_s["phase"] == "tg")].merge(facts, on=keys + ["model"])
    t = t[t["bw"].notna() & (t["wbpt"] > 0)].copy()
    limit = t["bw"] * 1e9 / t["wbpt"]
    for c in ("value", "lo", "hi"):
        t[c] = t[c] / limit
    t["quantity"], t["method"] = "roofline_efficiency", "roofline-efficiency"
    return t[COLUMNS].reset_index(drop=True)


def pick(est: pd.DataFrame, quantity: str, **keys) -> Estimate:
    """The one estimate matching `quantity` and `keys` (NAN if none)."""
    m = est["quantity"] == quantity
    for k, v in keys.items():
        m &= est[k].isna() if v is None else est[k] == v
    hit = est[m]
    if len(hit) > 1:
        raise ValueError(f"pick: {len(hit)} estimates match {quantity} {keys}")
    if hit.empty:
        return NAN
    r = hit.iloc[0]
    return Estimate(float(r["value"]), float(r["lo"]), float(r["hi"]), int(r["n"]))


def step_mean(per_step) -> Estimate:
    """A per-decode-step quantity of profile cells (the routing share of MoE-block time): the mean
    over steps, with the percentile bootstrap over steps (stats.bootstrap_ci)."""
    from edgemoe.stats import bootstrap_ci

    x = np.asarray([v for v in per_step if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return NAN
    lo, hi = bootstrap_ci(x)
    return Estimate(float(x.mean()), lo, hi, int(x.size))


def describe(methods: Iterable[str], warmup_excluded: int = 0) -> str:
    """One sentence per interval method used, for captions and table notes."""
    out = []
    for m in dict.fromkeys(methods):
        if m not in METHODS:
            raise ValueError(f"no description for estimate method {m!r}")
        out.append(f"{m}: {METHODS[m]}.")
    if warmup_excluded:
        out.append(f"{warmup_excluded} warm-up rows (a warm-up round that loads every model before the first "
                   "counted one, or a cell's untimed settling repetition after its model's pages were evicted) are "
                   "recorded but excluded from every estimate.")
    return " ".join(out)


__all__ = ["COLUMNS", "GROUP", "INTERVALS", "METHODS", "baseline_pairs", "describe", "estimates", "halfwidth", "in_rounds",
           "medians", "paired_ratio", "paired_values", "per_round", "pick", "ratios", "roofline_efficiency",
           "round_median", "standin_pairs", "step_mean", "tracking_index", "tracking_triples", "two_level_bootstrap",
           "usable", "warmup_rows"]
