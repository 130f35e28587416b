"""Expert locality of an MoE's routing: which experts the router selects, token after token, and
what a per-layer expert cache would make of it (issue 17, item 4). Pure pandas; the runs that make
the selections are edgemoe.locality_cells.

Input: selections, one row per (sequence, decode step, MoE layer) with the router's top-k ids in
rank order (`experts`, a list of k distinct ints in 0..E-1; `n_expert` E and `n_expert_used` k on
every row). A sequence is one prompt's decode in one locality run (the SEQUENCE columns: a group,
the run, the prompt); its steps are consecutive decode steps. Per (sequence, layer), and pooled over the sequences of a
group by summing counts (never by averaging rates):

- usage: how often each expert was selected; share = count / (k * steps).
- reuse share: for every step t >= 1 of a sequence, |S_t & S_t-1| / k, the share of the selected
  experts that the previous token of the same sequence selected too; pooled: the summed overlaps
  over k * (steps that have a previous one). Independent uniform routing gives k / E.
- LRU hit rate at capacity c (k <= c <= E): a cache of c experts per layer, empty when a sequence
  starts (its prompt's prefill is not counted: the cache sees decode steps only). At each step
  every selected expert is looked up before any is inserted: a hit if it is in the cache, a miss
  otherwise; then the k selected experts become the most recently used (the top-ranked last, so
  that of experts last used at the same step the top-ranked is evicted last) and the least
  recently used are evicted down to c. Hit rate = hits / (k * steps), every access counted: the
  misses include the compulsory ones (an expert's first use in the sequence), the only misses
  left at c = E. LRU keeps the c most recently used distinct experts, so an access hits at
  capacity c exactly when its recency depth (how many distinct experts were used since its last
  use) is below c: one pass gives every c. Independent uniform routing gives about c / E once the
  cache is warm; uniform_curve simulates it with the same sequence lengths, cold starts included.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

# What makes one run's selections a group (estimates are per group and layer), and one sequence.
KEYS = ["device", "engine", "model", "quant", "decode", "prompt_set"]
SEQUENCE = [*KEYS, "run_id", "prompt_id"]
ALL_LAYERS = -1  # the `layer` of rows pooled over every layer
CACHE_MULTIPLES = (1, 2, 4)  # the table's capacities: c = k, 2k, 4k


def read_experts(path: Path | str) -> pd.DataFrame:
    """edgemoe-profile --experts output: one JSON object per (decode step, MoE layer): step, pos,
    token (the id fed at that step), layer, experts (the top-k ids in rank order)."""
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                r = json.loads(line)
                rows.append(
                    {
                        "step": int(r["step"]),
                        "pos": int(r["pos"]),
                        "token": int(r["token"]),
                        "layer": int(r["layer"]),
                        "experts": [int(e) for e in r["experts"]],
                    }
                )
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i}: not an expert row ({type(e).__name__}: {e})") from None
    return pd.DataFrame(rows, columns=["step", "pos", "token", "layer", "experts"])


def check(sel: pd.DataFrame, n_expert: int, n_used: int, where: str = "selections") -> None:
    """Every step has the same MoE layers once each, and every row k distinct ids in 0..E-1."""
    if sel.empty:
        raise ValueError(f"{where}: no expert selections")
    for r in sel[["step", "layer", "experts"]].itertuples(index=False):
        ids = list(r.experts)
        if len(ids) != n_used or len(set(ids)) != n_used or min(ids) < 0 or max(ids) >= n_expert:
            raise ValueError(
                f"{where}: step {r.step} layer {r.layer} selected {ids}: expected {n_used} distinct "
                f"ids in 0..{n_expert - 1}"
            )
    layers = sel.groupby("step")["layer"].apply(lambda s: tuple(sorted(s)))
    if layers.nunique() != 1 or any(len(set(v)) != len(v) for v in layers):
        raise ValueError(f"{where}: the MoE layers differ between steps or repeat within one")
    steps = sorted(sel["step"].unique())
    if steps != list(range(steps[0], steps[0] + len(steps))):
        raise ValueError(f"{where}: decode steps are not consecutive ({steps[:5]}...)")


def _depths(steps: list[list[int]]) -> list[float]:
    """LRU recency depth of every access of one sequence, in order (inf at first use)."""
    stack: list[int] = []  # most recent first
    out = []
    for ids in steps:
        out += [stack.index(e) if e in stack else math.inf for e in ids]
        for e in reversed(ids):  # the top-ranked ends most recent
            if e in stack:
                stack.remove(e)
            stack.insert(0, e)
    return out


def accesses(sel: pd.DataFrame, sequence: list[str] = SEQUENCE) -> pd.DataFrame:
    """One row per selected expert: the sequence columns, layer, step, rank, expert, `depth` (its
    LRU recency depth before the step: distinct experts used since its last use in this sequence
    and layer; inf at first use) and `reused` (the previous step of the sequence selected it)."""
    out = []
    cols = [*sequence, "layer"]
    for key, g in sel.sort_values([*cols, "step"]).groupby(cols, sort=False):
        steps = [[int(e) for e in ids] for ids in g["experts"]]
        depth = iter(_depths(steps))
        prev: set[int] | None = None
        for step, ids in zip(g["step"], steps):
            for rank, e in enumerate(ids):
                out.append((*key, int(step), rank, e, next(depth), prev is not None and e in prev, prev is not None))
            prev = set(ids)
    return pd.DataFrame(out, columns=[*cols, "step", "rank", "expert", "depth", "reused", "has_prev"])


def _group_facts(sel: pd.DataFrame, keys: list[str]) -> dict[tuple, tuple[int, int]]:
    """(E, k) per group: the same on every row of a group."""
    out = {}
    for key, g in sel.groupby(keys, sort=False):
        pairs = set(zip(g["n_expert"].astype(int), g["n_expert_used"].astype(int)))
        if len(pairs) != 1:
            raise ValueError(f"expert counts (E, k) differ inside group {key}: {sorted(pairs)}")
        out[key if isinstance(key, tuple) else (key,)] = pairs.pop()
    return out


def _pooled(d: pd.DataFrame) -> pd.DataFrame:
    """Rows per layer, and again with every layer pooled (layer ALL_LAYERS)."""
    return pd.concat([d, d.assign(layer=ALL_LAYERS)], ignore_index=True)


def usage(sel: pd.DataFrame, keys: list[str] = KEYS) -> pd.DataFrame:
    """The usage histogram: per group, layer and expert (every one of 0..E-1, unused ones with 0):
    count and share of the layer's selections. No row pools layers: expert e of one layer is not
    expert e of another."""
    facts = _group_facts(sel, keys)
    picks = sel[[*keys, "layer", "experts"]].explode("experts").rename(columns={"experts": "expert"})
    picks["expert"] = picks["expert"].astype(int)
    out = []
    for key, g in picks.groupby([*keys, "layer"], sort=True):
        n_expert = facts[key[:-1]][0]
        counts = g["expert"].value_counts().reindex(range(n_expert), fill_value=0).sort_index()
        out += [(*key, e, int(n), n / counts.sum()) for e, n in counts.items()]
    return pd.DataFrame(out, columns=[*keys, "layer", "expert", "count", "share"])


def lru_curve(sel: pd.DataFrame, keys: list[str] = KEYS, sequence: list[str] = SEQUENCE) -> pd.DataFrame:
    """LRU hit rate for every capacity c from k to E, per group, layer and ALL_LAYERS: hits,
    accesses, hit_rate, compulsory (first-use misses) and c_over_k."""
    facts = _group_facts(sel, keys)
    acc = _pooled(accesses(sel, sequence))
    rows = []
    for key, g in acc.groupby([*keys, "layer"], sort=True):
        n_expert, k = facts[key[:-1]]
        depth = g["depth"].to_numpy()
        compulsory = int(np.isinf(depth).sum())
        for c in range(k, n_expert + 1):
            hits = int((depth < c).sum())
            rows.append((*key, n_expert, k, c, c / k, hits, len(depth), hits / len(depth), compulsory))
    return pd.DataFrame(
        rows,
        columns=[
            *keys,
            "layer",
            "n_expert",
            "n_expert_used",
            "capacity",
            "c_over_k",
            "hits",
            "accesses",
            "hit_rate",
            "compulsory",
        ],
    )


def uniform_curve(
    n_expert: int, n_used: int, lengths: list[int], seed: int = 0, min_accesses: int = 20000
) -> pd.DataFrame:
    """The reference of independent uniform routing with the same sequence lengths (so the same
    share of compulsory misses): k distinct experts drawn uniformly per step, the LRU hit rate for
    every c from k to E, simulated from `seed` (replicated to at least min_accesses accesses)."""
    rng = np.random.default_rng(seed)
    reps = max(1, math.ceil(min_accesses / (n_used * max(1, sum(lengths)))))
    depth = []
    for _ in range(reps):
        for n in lengths:
            picks = np.argsort(rng.random((n, n_expert)), axis=1)[:, :n_used]
            depth += _depths(picks.tolist())
    depth = np.asarray(depth)
    caps = np.arange(n_used, n_expert + 1)
    return pd.DataFrame({"capacity": caps, "c_over_k": caps / n_used, "hit_rate": [(depth < c).mean() for c in caps]})


def reuse(sel: pd.DataFrame, keys: list[str] = KEYS, sequence: list[str] = SEQUENCE) -> pd.DataFrame:
    """Per group, layer and ALL_LAYERS: the pooled share of selected experts reused from the
    previous token (steps with a previous one), and the independent-uniform reference k / E."""
    facts = _group_facts(sel, keys)
    acc = _pooled(accesses(sel, sequence))
    acc = acc[acc["has_prev"]]
    out = acc.groupby([*keys, "layer"]).agg(reused=("reused", "sum"), compared=("reused", "size")).reset_index()
    out["reused"] = out["reused"].astype(int)
    out["reuse_share"] = out["reused"] / out["compared"]
    ek = [facts[tuple(r)] for r in out[keys].itertuples(index=False)]
    out["n_expert"], out["n_expert_used"] = [e for e, _ in ek], [k for _, k in ek]
    out["uniform_reuse_share"] = out["n_expert_used"] / out["n_expert"]
    return out


def token_repeats(sel: pd.DataFrame, keys: list[str] = KEYS, sequence: list[str] = SEQUENCE) -> pd.DataFrame:
    """What was fed, per group: the share of steps (with a previous one in their sequence) that fed
    the previous step's token again (repeat: 1; random: about 0; a twin's greedy decode: high,
    random weights soon repeat a few tokens), and distinct tokens fed per sequence (mean)."""
    fed = sel.drop_duplicates([*sequence, "step"]).sort_values([*sequence, "step"])
    prev = fed.groupby(sequence, sort=False)["token"].shift()
    fed = fed.assign(same=fed["token"] == prev, has_prev=prev.notna())
    same = fed[fed["has_prev"]].groupby(keys)["same"].mean().rename("token_repeat_share")
    distinct = fed.groupby(sequence)["token"].nunique().groupby(keys).mean().rename("distinct_tokens")
    return pd.concat([same, distinct], axis=1).reset_index()


def summary(sel: pd.DataFrame, keys: list[str] = KEYS, sequence: list[str] = SEQUENCE) -> pd.DataFrame:
    """The locality table: per group and layer (and ALL_LAYERS): sequences, decode steps, reuse
    share, what was fed (token_repeat_share, distinct_tokens), usage (distinct experts used, the most used expert's share of the selections,
    normalised entropy: 1 = uniform; for ALL_LAYERS the means over layers), the LRU hit rate at
    c = k, 2k, 4k (NaN where c > E) and the compulsory misses' share of the accesses."""
    use = usage(sel, keys)
    ent = (
        use.groupby([*keys, "layer"])
        .agg(
            experts_used=("count", lambda s: int((s > 0).sum())),
            top_share=("share", "max"),
            usage_entropy=("share", lambda s: float(-(s[s > 0] * np.log(s[s > 0])).sum() / np.log(len(s)))),
        )
        .reset_index()
    )
    ent = pd.concat(
        [
            ent,
            ent.groupby(keys)
            .agg(
                experts_used=("experts_used", "mean"),
                top_share=("top_share", "mean"),
                usage_entropy=("usage_entropy", "mean"),
            )
            .reset_index()
            .assign(layer=ALL_LAYERS),
        ],
        ignore_index=True,
    )
    reu = reuse(sel, keys, sequence)
    curve = lru_curve(sel, keys, sequence)
    steps = (
        _pooled(sel[[*sequence, "layer", "step"]])
        .drop_duplicates()
        .groupby([*keys, "layer"])
        .agg(steps=("step", "size"))
        .reset_index()
    )
    seqs = sel.drop_duplicates(sequence).groupby(keys).size().rename("sequences").reset_index()
    steps = seqs.merge(steps, on=keys).merge(token_repeats(sel, keys, sequence), on=keys, how="left")
    out = steps.merge(
        reu[[*keys, "layer", "n_expert", "n_expert_used", "reuse_share", "uniform_reuse_share"]],
        on=[*keys, "layer"],
        how="left",
    )
    out = out.merge(ent, on=[*keys, "layer"])
    for m in CACHE_MULTIPLES:
        at = curve[curve["capacity"] == m * curve["n_expert_used"]][[*keys, "layer", "hit_rate"]]
        out = out.merge(at.rename(columns={"hit_rate": f"lru_hit_{m}k"}), on=[*keys, "layer"], how="left")
    comp = curve.groupby([*keys, "layer"]).agg(compulsory=("compulsory", "first"), accesses=("accesses", "first"))
    out = out.merge(comp.reset_index(), on=[*keys, "layer"])
    out["compulsory_share"] = out["compulsory"] / out["accesses"]
    return out.drop(columns=["compulsory", "accesses"])


# ---- the table ---------------------------------------------------------------------------------

FACTS = ["weights_source", "is_twin", "router_skew", "hf_repo", "hf_revision", "gguf_sha256", "n_gen", "warmup"]
DECODED = {
    "text": "text (the prompt's own tokens, one per decode step: real text)",
    "greedy": "greedy (the model's own next token, argmax of its logits)",
    "repeat": "repeat (one token id, drawn from the seed, fed again and again)",
    "random": "random (uniform random token ids, as llama-bench at the study's commit feeds)",
}


def model_label(model: str, is_twin: bool, router_skew: float | None, weights_source: str) -> str:
    """How a model is named in tables and figures: a twin says so, with its router skew."""
    if is_twin:
        return f"{model} (twin, skew {router_skew or 0:g})"
    return f"{model} ({weights_source} weights)"


def table(sel: pd.DataFrame) -> pd.DataFrame:
    """summary() with each group's facts (where its weights came from, what was decoded)."""
    facts = sel.groupby(KEYS, sort=False).agg(**{f: (f, "first") for f in FACTS}).reset_index()
    t = facts.merge(summary(sel), on=KEYS)
    t.insert(
        KEYS.index("model") + 1,
        "label",
        [model_label(r.model, r.is_twin, r.router_skew, r.weights_source) for r in t.itertuples()],
    )
    order = {m: i for i, m in enumerate(dict.fromkeys(sel["model"]))}
    return (
        t.sort_values(["device", "engine", "decode", "prompt_set", "quant", "layer"], kind="stable")
        .sort_values("model", key=lambda s: s.map(order), kind="stable")
        .reset_index(drop=True)
    )


def decoded(sel: pd.DataFrame) -> str:
    """What the selections decoded and from what weights, in sentences (tables' notes, captions)."""
    out = []
    for pset, g in sel.groupby("prompt_set", sort=True):
        ids = list(dict.fromkeys(g.drop_duplicates(["run_id", "prompt_id"])["prompt_id"]))
        modes = [DECODED.get(m, m) for m in sorted(g["decode"].unique(), key=lambda m: list(DECODED).index(m))]
        modes = ", ".join(modes[:-1]) + (" and " if len(modes) > 1 else "") + modes[-1]
        lo, hi = int(g["n_gen"].min()), int(g["n_gen"].max())
        steps = f"{lo}" if lo == hi else f"{lo} to {hi}"
        fewer = "" if lo == hi else " (text: as many as each prompt has, up to the steps asked)"
        warm = ", ".join(str(n) for n in sorted(g["warmup"].unique()))
        out.append(
            f"Prompts: the {len(ids)} of the set {pset!r} ({', '.join(ids[:12])}{', ...' if len(ids) > 12 else ''}), "
            f"their text tokenised with each model's vocabulary; after each, {steps} decode steps recorded{fewer} "
            f"after {warm} unrecorded warm-up steps, decoded {modes}. The LRU cache starts empty at every "
            "prompt and sees decode steps only."
        )
    rep = token_repeats(sel)
    rep = rep[(rep["decode"] != "repeat") & (rep["token_repeat_share"] >= 0.3)]
    if len(rep):
        which = ", ".join(f"{r.model} {r.decode} {r.token_repeat_share:.0%}" for r in rep.itertuples())
        out.append(
            f"Steps that fed the previous step's token again ({which}): there the locality is partly that "
            "of a repeated token."
        )
    twins = sorted(sel.loc[sel["is_twin"].astype(bool), "model"].unique())
    if twins:
        out.append(
            f"Twins ({', '.join(twins)}) are shape twins with random weights: their routing is that of "
            "random routers (and of the router-skew knob), never a trained model's."
        )
    for m, g in sel[~sel["is_twin"].astype(bool)].groupby("model", sort=True):
        r = g.iloc[0]
        src = f"{r['hf_repo']}@{str(r['hf_revision'])[:12]}" if r["hf_repo"] else "a local file"
        out.append(f"{m}: {r['weights_source']} weights ({src}), GGUF sha256 {str(r['gguf_sha256'])[:12]}.")
    return " ".join(out)


SHOWN = {
    "label": "model",
    "decode": "decode",
    "layer": "layer",
    "ek": "E / k",
    "steps": "steps",
    "token_repeat_share": "token fed again",
    "reuse": "reused from previous token [uniform]",
    "lru_hit_1k": "LRU hit c=k",
    "lru_hit_2k": "c=2k",
    "lru_hit_4k": "c=4k",
    "top_share": "top expert share",
    "usage_entropy": "usage entropy",
}


def write_table(t: pd.DataFrame, sel: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    from edgemoe.files import atomic_write_text

    atomic_write_text(csv_path, t.to_csv(index=False, float_format="%.6g"))
    shown = t.assign(
        layer=t["layer"].map(lambda x: "all" if x == ALL_LAYERS else str(x)),
        ek=[f"{e} / {k}" for e, k in zip(t["n_expert"], t["n_expert_used"])],
        reuse=[f"{a:.3f} [{b:.3f}]" for a, b in zip(t["reuse_share"], t["uniform_reuse_share"])],
    )
    shown = shown[list(SHOWN)].rename(columns=SHOWN)
    note = (
        "Expert locality per MoE layer ('all': every layer pooled; usage columns: means over layers). "
        "Reused: share of the selected experts the previous token selected too (uniform independent routing: "
        "k/E); LRU hit: hit rate of a per-layer cache of c experts, compulsory misses included (edgemoe/locality.py). "
        + decoded(sel)
    )
    atomic_write_text(md_path, note + "\n\n" + shown.to_markdown(index=False, floatfmt=".3f") + "\n")
