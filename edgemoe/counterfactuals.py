"""Counterfactual twins of an MoE model: the same model with its FFN changed and nothing else.

For an MoE model M with E experts, k used per token, expert width I (its id `M@<derivation>`):
- `M@moe`: M itself in an architecture with both an MoE and a dense form (llama.cpp's `olmoe` has
  no dense form; `llama` runs with or without `*_exps` experts; `granitemoe` and `granite` are one
  loader and graph under two names, so a Granite MoE's dense members are `granite`), so the three
  members below differ in their FFN and router only. Its speed against the original twin is measured (paired ratio).
- `M@dense-active`: one dense FFN of width k*I per layer, no router: M's FFN bytes per token.
- `M@dense-total`: one dense FFN of width E*I: every parameter read per token.
- `M@E<e>k<j>`: a controlled sweep member: e experts, j used, expert width k*I / j (active FFN
  bytes fixed); its dense-total is `M@dense-ff<e*k*I/j>`.
Everything else (layers, attention, norms, embeddings, vocabulary, context) is M's. Ids are
canonical: the sweep member with M's own e and j is `M@moe`, the dense member of width k*I is
`M@dense-active`, of width E*I `M@dense-total`, so no file is written twice.

The total-tracking index of an MoE member (edgemoe.estimates.tracking_index) pairs it with the
dense members of its active and total FFN width, found from the records' `derived_from` and
`ffn_*` fields: it needs no config, so released data rebuilds it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from edgemoe.architectures import DEFAULT_VOCAB, PRE_TOKENIZER, ArchSpec

# The architecture that has both forms, per MoE architecture; where llama.cpp names the dense form
# differently (granite: one loader and graph, build_llama, for both names), DENSE_FORM.
BOTH_FORMS = {"olmoe": "llama", "llama": "llama", "granitemoe": "granitemoe"}
DENSE_FORM = {"granitemoe": "granite"}
# Shared experts (always active, beside the routed ones): the brackets' widths would need the shared
# width too (edgemoe.estimates pairs a member with dense widths k*I and E*I), so not derived yet.
SHARED_EXPERTS = ("qwen2moe", "deepseek2")
FAMILY = ("moe", "dense-active", "dense-total")
QK_K = 256  # k-quant super-block: a row length (expert or FFN width) must be a multiple of it
_MEMBER = re.compile(r"E(\d+)k(\d+)")
_DENSE = re.compile(r"dense-ff(\d+)")


class DerivationError(ValueError):
    """A derivation that cannot be made, named by the model id (config.py adds the key)."""


def split(model_id: str) -> tuple[str, str | None]:
    """(base model id, derivation) of an id; (id, None) for a model of the registry."""
    base, _, derivation = model_id.partition("@")
    return base, (derivation or None)


def derived_from(model_id: str) -> str | None:
    """The base model of a counterfactual id, None for a model of the registry."""
    base, derivation = split(model_id)
    return base if derivation else None


def _in_both_forms(model_id: str, spec: ArchSpec) -> ArchSpec:
    if not spec.is_moe:
        raise DerivationError(f"{model_id}: counterfactual twins derive from an MoE model; it is dense "
                              f"(n_expert 0)")
    if spec.arch in SHARED_EXPERTS:
        raise DerivationError(f"{model_id}: {spec.arch} has shared experts beside the routed ones; its counterfactual "
                              f"family is not defined yet (known: {sorted(BOTH_FORMS)})")
    if spec.arch not in BOTH_FORMS:
        raise DerivationError(f"{model_id}: no llama.cpp architecture with both forms for {spec.arch!r}; "
                              f"known: {sorted(BOTH_FORMS)}")
    return dataclasses.replace(spec, arch=BOTH_FORMS[spec.arch], vocab=spec.vocab or DEFAULT_VOCAB[spec.arch],
                               pre_tokenizer=spec.pre_tokenizer or PRE_TOKENIZER[spec.arch])


def _check_width(model_id: str, what: str, width: float, quants: list[str]) -> None:
    if width != int(width) or width <= 0:
        raise DerivationError(f"{model_id}: {what} {width:g} is not a whole number of weights")
    if any("_K" in q for q in quants) and int(width) % QK_K:
        raise DerivationError(f"{model_id}: {what} {int(width)} is not a multiple of {QK_K} "
                              f"(k-quants such as {next(q for q in quants if '_K' in q)} pack rows in blocks of 256)")


def derive(model_id: str, base_spec: ArchSpec, quants: list[str] = ()) -> ArchSpec:
    """The spec of a derived id (`M@moe`, `M@dense-active`, `M@dense-total`, `M@E<e>k<j>`,
    `M@dense-ff<w>`) from M's spec; DerivationError naming the id when it cannot be made."""
    base, derivation = split(model_id)
    stand_in = _in_both_forms(base, base_spec)
    active_ff = base_spec.n_expert_used * base_spec.n_ff
    dense = dict(n_expert=0, n_expert_used=0, arch=DENSE_FORM.get(stand_in.arch, stand_in.arch))
    if derivation == "moe":
        return stand_in
    if derivation == "dense-active":
        return dataclasses.replace(stand_in, n_ff=active_ff, **dense)
    if derivation == "dense-total":
        return dataclasses.replace(stand_in, n_ff=base_spec.n_expert * base_spec.n_ff, **dense)
    if m := _DENSE.fullmatch(derivation or ""):
        width = int(m.group(1))
        _check_width(model_id, "FFN width", width, quants)
        return dataclasses.replace(stand_in, n_ff=width, **dense)
    if m := _MEMBER.fullmatch(derivation or ""):
        n_expert, n_used = int(m.group(1)), int(m.group(2))
        if n_used < 1 or n_expert < n_used:
            raise DerivationError(f"{model_id}: {n_expert} experts with {n_used} used (needs 1 <= used <= experts)")
        _check_width(model_id, f"expert width {active_ff}/{n_used} =", active_ff / n_used, quants)
        return dataclasses.replace(stand_in, n_expert=n_expert, n_expert_used=n_used, n_ff=active_ff // n_used)
    raise DerivationError(f"{model_id}: unknown derivation {derivation!r}; allowed: moe, dense-active, dense-total, "
                          "E<experts>k<used>, dense-ff<width> (skewed twins M@skew<s>: experiment.locality.models only)")


def canonical(base: str, base_spec: ArchSpec, spec: ArchSpec) -> str:
    """The id of a derived spec: the family's names where they apply (see the module doc)."""
    if spec.is_moe:
        if (spec.n_expert, spec.n_expert_used) == (base_spec.n_expert, base_spec.n_expert_used):
            return f"{base}@moe"
        return f"{base}@E{spec.n_expert}k{spec.n_expert_used}"
    if spec.n_ff == base_spec.n_expert_used * base_spec.n_ff:
        return f"{base}@dense-active"
    if spec.n_ff == base_spec.n_expert * base_spec.n_ff:
        return f"{base}@dense-total"
    return f"{base}@dense-ff{spec.n_ff}"


def family(base: str) -> list[str]:
    """The three members of an MoE model's family."""
    return [f"{base}@{d}" for d in FAMILY]


def sweep(base: str, base_spec: ArchSpec, n_experts: list[int], n_used: list[int], quants: list[str]) -> list[str]:
    """A controlled sweep's members (every e x j, active FFN width fixed at M's k*I) and the dense
    members that bracket them (active width, and each member's total width), canonical ids."""
    ids: list[str] = []
    for e in n_experts:
        for j in n_used:
            member = derive(f"{base}@E{e}k{j}", base_spec, quants)
            total = dataclasses.replace(member, n_expert=0, n_expert_used=0, n_ff=member.n_expert * member.n_ff)
            ids += [canonical(base, base_spec, member), canonical(base, base_spec, total)]
    ids.append(f"{base}@dense-active")
    return list(dict.fromkeys(ids))


def ffn_facts(spec: ArchSpec, derived_from: str | None) -> dict[str, Any]:
    """What a model's records say about its FFN: enough to pair an MoE member with its brackets."""
    return {"derived_from": derived_from, "arch": spec.arch, "ffn_experts": spec.n_expert,
            "ffn_experts_used": spec.n_expert_used, "ffn_width": spec.n_ff}
