"""The rounds design: which cells run in which round, in which order, after what.

A block design (all repetitions of model A, then all of B) turns drift (heat, load, clock
frequency) into bias: A's numbers come from a cooler machine than B's. Here a device's cells run
in *rounds*: each round runs every (model, quant, test[, engine]) cell once (a test with `every: N` in every
Nth counted round only: prefill is not what the stopping target is about), `repetitions` times,
in an order shuffled per round from a recorded seed. Ratios are computed inside each round
(`edgemoe.estimates`); after each round `edgemoe.stopping.decide` says whether to go on.

Warm-up: the first `warmup_rounds` rounds run every cell measured in every round once, and the
cells of `warm_tests` (the interleaved decode tests: cheap, and they hold every model), touching
every model's weights (page cache, CPU caches, clocks) before the first counted round; their
records say `warmup` and no estimate uses them (the first round was 10-15% slow for every model).

Order modes: `shuffled` draws a fresh permutation for every counted round from (seed, round);
`balanced` (default) draws one for counted rounds 2j and runs it reversed in 2j+1, so a monotone
drift favours each model of a pair equally often (ABBA counterbalancing). Warm-up rounds draw
theirs from seed + 1. Every round's order is the full design's order filtered to its cells.

No Snakemake here: workflow/rules/rounds.smk wires `RoundsDesign` into the DAG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemoe.config import ConfigError, content_hash

ORDER_MODES = ("balanced", "shuffled")


@dataclass(frozen=True, order=True)
class Cell:
    """A (model, quant, test) cell of a round; with an engine axis (edgemoe/engine_axis.py) also the
    engine that runs it ("" in a one-engine experiment, so that such designs keep their ids)."""

    model: str
    quant: str
    test: str
    engine: str = ""

    def __str__(self) -> str:
        return f"{self.model}/{self.quant}/{self.test}" + (f"@{self.engine}" if self.engine else "")


def round_order(cells: Sequence, seed: int, k: int, mode: str = "balanced") -> list:
    """The order in which round k runs `cells`: deterministic in (cells, seed, k, mode).

    The permutation is drawn from numpy's PCG64 seeded with [seed, k] (balanced: [seed, k // 2],
    reversed for odd k), applied to the cells sorted, so the config's listing order does not
    matter."""
    if mode not in ORDER_MODES:
        raise ValueError(f"order mode {mode!r}; allowed: {', '.join(ORDER_MODES)}")
    if k < 0:
        raise ValueError(f"round index must be >= 0, got {k}")
    base = sorted(cells)
    if len(set(base)) != len(base):
        raise ValueError("cells must be unique")
    draw = k // 2 if mode == "balanced" else k
    perm = np.random.default_rng([int(seed), int(draw)]).permutation(len(base))
    order = [base[i] for i in perm]
    if mode == "balanced" and k % 2 == 1:
        order.reverse()
    return order


@dataclass(frozen=True)
class After:
    """What a round cell waits for: a cell of the same round, or (cell None) a round's decision."""

    round: int
    cell: Any


def headline_pairs(families: dict[str, str], baseline: str, which: str = "all") -> list[tuple[str, str]]:
    """(MoE, dense) pairs in the study's order: for each MoE (in `families`' order) the same-active
    baseline first, then the other dense models. which='baseline' keeps only the first."""
    moes = [m for m, f in families.items() if f == "moe"]
    dense = [m for m, f in families.items() if f != "moe"]
    dense = ([baseline] if baseline in dense else []) + [d for d in dense if d != baseline]
    if which not in ("all", "baseline"):
        raise ValueError(f"pairs {which!r}; allowed: all, baseline")
    return [(m, d) for m in moes for d in (dense[:1] if which == "baseline" else dense)]


class RoundsDesign:
    """One rounds design: its cells, per-round membership and order, chain, and identities.

    `settings` is `experiment.rounds` as the schema filled it (the defaults live there only)."""

    def __init__(self, settings: dict[str, Any], cells: Sequence[Cell], every: dict[str, int],
                 identity: Any = None, pairs: Sequence[tuple[str, str]] = (), warm_tests: Sequence[str] = ()):
        if not 1 <= settings["min_rounds"] <= settings["max_rounds"] <= 999:
            raise ConfigError("experiment.rounds: need 1 <= min_rounds <= max_rounds <= 999, got "
                              f"{settings['min_rounds']} and {settings['max_rounds']}")
        if settings["order"] not in ORDER_MODES:
            raise ConfigError(f"experiment.rounds.order: {settings['order']!r}; allowed: {', '.join(ORDER_MODES)}")
        self.settings = dict(settings)
        self.cells = sorted(cells)
        if len(set(self.cells)) != len(self.cells):
            raise ConfigError("experiment.rounds: duplicated cells")
        self.every = {c.test: int(every.get(c.test, 1)) for c in self.cells}
        if not any(n == 1 for n in self.every.values()):
            raise ConfigError("experiment.tests: in the rounds design at least one test must run in every "
                              "round (every: 1)")
        self.seed, self.mode = int(settings["seed"]), settings["order"]
        self.warmup_rounds = int(settings["warmup_rounds"])
        self.repetitions = int(settings["repetitions"])
        self.pairs = [tuple(p) for p in pairs]
        self.warm_tests = set(warm_tests)
        # The design's identity (what is measured and in which order): another experiment's rounds
        # live in another folder instead of overwriting these. Stopping settings are not part of it:
        # raising the budget adds rounds to the same design.
        self.id = "design-" + content_hash([[str(c) for c in self.cells], self.every, self.repetitions, self.mode,
                                            self.seed, self.warmup_rounds, identity])[:8]
        self.stopping = content_hash([settings[k] for k in ("min_rounds", "max_rounds", "target_halfwidth",
                                                            "target_phase", "target_pairs", "budget_s", "interval")])[:6]

    def is_warmup(self, k: int) -> bool:
        return int(k) < self.warmup_rounds

    def cells_of(self, k: int) -> list[Cell]:
        """The cells round k runs: warm-up rounds the every-round cells and those of warm_tests;
        counted round c those whose test's `every` divides c."""
        k = int(k)
        if self.is_warmup(k):
            return [c for c in self.cells if self.every[c.test] == 1 or c.test in self.warm_tests]
        counted = k - self.warmup_rounds
        return [c for c in self.cells if counted % self.every[c.test] == 0]

    def rounds_like(self, k: int, upto: int) -> list[int]:
        """Rounds 0..upto that run the same cells as round k (to foresee round k's duration)."""
        cells = self.cells_of(k)
        return [j for j in range(int(upto) + 1) if self.cells_of(j) == cells]

    def order(self, k: int) -> list[Cell]:
        k = int(k)
        full = (round_order(self.cells, self.seed + 1, k, "shuffled") if self.is_warmup(k)
                else round_order(self.cells, self.seed, k - self.warmup_rounds, self.mode))
        members = set(self.cells_of(k))
        return [c for c in full if c in members]

    def position(self, k: int, cell: Cell) -> int:
        return self.order(k).index(cell)

    def predecessor(self, k: int, cell: Cell) -> After | None:
        """The job that must finish before `cell` of round k starts: the cell before it in round
        k's order; for round k's first cell the decision of round k-1; nothing for round 0's first."""
        order = self.order(k)
        if cell not in order:
            raise ValueError(f"{cell} is not one of round {k}'s cells ({', '.join(map(str, order))})")
        i = order.index(cell)
        if i > 0:
            return After(k, order[i - 1])
        return After(k - 1, None) if k > 0 else None

    def chain(self, k: int) -> list[tuple[Cell, After | None]]:
        """Round k's cells in run order, each with its predecessor."""
        return [(c, self.predecessor(k, c)) for c in self.order(k)]


__all__ = ["ORDER_MODES", "After", "Cell", "RoundsDesign", "headline_pairs", "round_order"]
