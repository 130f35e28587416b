# Rounds (the default design; edgemoe/rounds.py): a device's cells run in rounds, each round's
# cells in an order drawn from a recorded seed, each cell waiting for the one before it; a round's
# first cell waits for the previous round's decision, which waits for every cell of that round: so
# rounds never overlap and resume where they stopped. After each round the `round_decision`
# checkpoint decides (edgemoe.stopping.decide) whether another round runs; `rounds_all` reads the
# decisions one by one (the iterative-checkpoint pattern) and closes the rounds with a file named
# after the stopping rule (edgemoe.paths.rounds_done).
#
# Needs common.smk (EXP, paths) and cells.smk (CELL_PARAMS, cell_inputs, cell_id).
import json
from types import SimpleNamespace

from edgemoe import interleave
from edgemoe.rounds import After, Cell, RoundsDesign, headline_pairs, round_order

ROUNDS = config["experiment"]["rounds"]  # the schema filled its defaults
# With depth enabled, depth cells (edgemoe.depth) run in the rounds too, as cells of their own.
DEPTH_IN_ROUNDS = bool(ROUNDS["enabled"] and config.get("depth", {}).get("enabled"))
INTERLEAVED = [t.name for t in EXP.tests.values() if t.interleave and EXP.test_models(t.name)]
# The engine axis (edgemoe/engine_axis.py): with more than one engine each cell names its engine
# and the engines' cells are shuffled together in every round; with one, cells name none.
AXIS = {e: (e if len(EXP.engine_ids) > 1 else "") for e in EXP.engine_ids}
try:
    DESIGN = RoundsDesign(
        ROUNDS,
        cells=[
            Cell(m, q, t, AXIS[e])
            for e in EXP.engine_ids
            for t in [*EXP.tests, *(EXP.depth_tests() if DEPTH_IN_ROUNDS else []), *EXP.prompt_tests()]
            if t not in INTERLEAVED
            for m in EXP.test_models(t)
            for q in EXP.quants
        ]
        # an interleaved test (edgemoe/interleave.py): one cell for all models of the round
        + [Cell(interleave.GROUP, q, t, AXIS[e]) for e in EXP.engine_ids for q in EXP.quants for t in INTERLEAVED],
        every={t.name: t.every for t in EXP.tests.values()},
        identity=[
            EXP.use_mmap,
            {m: EXP.models[m].weights_tag for m in EXP.models},
            {t: EXP.tests[t] for t in EXP.tests},
            config["depth"] if DEPTH_IN_ROUNDS else None,
            # prompt cells (workflow/rules/prompts.smk) only where on: other designs keep their ids
            *([config["experiment"]["prompts"]] if EXP.prompt_tests() else []),
        ],
        # the study's pairs: registry models only (counterfactuals have the index, not a target)
        warm_tests=INTERLEAVED,  # the warm-up touches every model of every interleaved decode test
        pairs=headline_pairs(
            {m: x.family for m, x in EXP.models.items() if x.derived_from is None}, EXP.baseline, ROUNDS["target_pairs"]
        ),
    )
    if INTERLEAVED and EXP.device is not None:  # every model mapped at once: they must fit together
        from edgemoe.preflight import gguf_bytes

        for t in INTERLEAVED:  # one process per test and quant
            for q in EXP.quants:
                sizes = {m: gguf_bytes(EXP.models[m].spec, q) for m in EXP.test_models(t)}
                interleave.check_fits(sizes, EXP.device.memory_ceiling_bytes, EXP.device_id, f"{t} {q}")
except (ConfigError, interleave.InterleaveError) as e:
    raise WorkflowError(f"Configuration error: {e}") from None
INTERLEAVED_TAG = "interleaved"  # the weights-tag part of an interleaved cell's path (each model has its own)
ROUND_STEM = paths.round_cell_stem(
    "{device}", "{engine}", DESIGN.id, "{round}", "{model}", "{tag}", "{quant}", "{test}"
)


def rounds_done_file(device=None):
    return paths.rounds_done(device or EXP.device_id, DESIGN.id, DESIGN.stopping)


def wildcard_cell(w):
    """The design's cell a round job's wildcards name."""
    return Cell(w.model, w.quant, w.test, AXIS.get(w.engine, w.engine))


def round_cell_file(device, k, cell):
    tag = INTERLEAVED_TAG if cell.model == interleave.GROUP else EXP.models[cell.model].weights_tag
    engine = cell.engine or EXP.engine_id
    return paths.round_cell_file(device, engine, DESIGN.id, k, cell.model, tag, cell.quant, cell.test)


def round_decision_file(device, k):
    """A round's decision, under the experiment's engine (the first of the axis)."""
    return paths.round_decision(device, EXP.engine_id, DESIGN.id, k)


def round_cell_input(w):
    """The cell's inputs (one cell shape), and (ancient: ordering only, a rerun upstream does not
    cascade) the job before it in the chain."""
    inputs = cell_inputs(w)
    if w.test in EXP.depth_tests():
        inputs["build"] = depth_build(w)
        inputs.pop("bandwidth")
    return {**inputs, **round_after(w)}


def interleaved_cell_input(w):
    """The test's models' files and sidecars (in EXP.models' order), the build, the bandwidth, the job before."""
    return {
        "build": paths.build_info(w.engine, w.device),
        "bandwidth": paths.bandwidth(w.device),
        "gguf": [EXP.model_file(m, w.quant) for m in EXP.test_models(w.test)],
        "model_info": [EXP.model_file(m, w.quant, "json") for m in EXP.test_models(w.test)],
        **round_after(w),
    }


def round_after(w):
    after = DESIGN.predecessor(int(w.round), wildcard_cell(w))
    if after is not None:
        prev = (
            round_decision_file(w.device, after.round)
            if after.cell is None
            else round_cell_file(w.device, after.round, after.cell)
        )
        return {"after": ancient(prev)}
    return {}


def round_fields(w):
    """What a round cell's records say about its round."""
    k = int(w.round)
    return {
        "round": k,
        "round_position": DESIGN.position(k, wildcard_cell(w)),
        "round_seed": DESIGN.seed,
        "round_design": DESIGN.id,
        "warmup": DESIGN.is_warmup(k),
    }


def round_records_upto(device, k):
    """Every cell record file of rounds 0..k (every engine's)."""
    return [round_cell_file(device, j, c) for j in range(int(k) + 1) for c in DESIGN.cells_of(j)]


def round_decisions(device=None, engine=None):
    """Decision files of the rounds run so far, up to the one that said stop. Reading decision k
    before asking for decision k+1 makes Snakemake run round k first (checkpoint)."""
    device, engine = device or EXP.device_id, engine or EXP.engine_id
    out = []
    for k in range(ROUNDS["max_rounds"]):
        f = checkpoints.round_decision.get(device=device, engine=engine, round=paths.round_tag(k)).output.decision
        out.append(f)
        with open(f) as fh:
            if not json.load(fh)["continue"]:
                break
    return out


def other_device_rounds_done():
    """The same design's closing files of other devices already on disk (the newest of each): their
    records are merged as they are, never rerun, like EXP.other_device_records()."""
    import glob

    out = []
    for d in EXP.devices:
        done = sorted(glob.glob(paths.rounds_done_glob(glob.escape(d), DESIGN.id)), key=os.path.getmtime)
        if d != EXP.device_id and done:
            out.append(done[-1])
    return out


rule round_cell:
    input:
        unpack(round_cell_input),
    output:
        records=f"{ROUND_STEM}.jsonl",
        raw=f"{ROUND_STEM}.llama-bench.jsonl",
    log:
        f"{ROUND_STEM}.stderr.log",
    wildcard_constraints:
        round=r"\d{3}",
        model=rf"(?!{interleave.GROUP}/)[^/]+",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        **CELL_PARAMS,
        cell_id=lambda w: cell_id(w, w.round),
        repetitions=lambda w: EXP.tests[w.test].repetitions or DESIGN.repetitions,
        rounds=round_fields,
    script:
        "../scripts/bench_cell.py"


rule round_depth_cell:
    """A depth cell inside the rounds (workflow/scripts/depth_cell.py with the round's fields)."""
    input:
        unpack(round_cell_input),
    output:
        records=f"{ROUND_STEM}.jsonl",
        summary=f"{ROUND_STEM}.summary.json",
        raw=directory(f"{ROUND_STEM}.raw"),
    log:
        f"{ROUND_STEM}.stderr.log",
    wildcard_constraints:
        round=r"\d{3}",
        test=r"depth\d+[-a-z0-9_]*",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        cell_id=lambda w: cell_id(w, w.round),
        device=lambda w: EXP.devices[w.device],
        settings=config["depth"],
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        lock=paths.BENCH_LOCK,
        rounds=round_fields,
    script:
        "../scripts/depth_cell.py"


ruleorder: round_depth_cell > round_cell


rule round_interleaved_cell:
    """Every model's cell of an interleaved test in one process (workflow/scripts/interleaved_cell.py)."""
    input:
        unpack(interleaved_cell_input),
    output:
        records=f"{ROUND_STEM}.jsonl",
        raw=f"{ROUND_STEM}.{interleave.PROGRAM}.jsonl",
    log:
        f"{ROUND_STEM}.stderr.log",
    wildcard_constraints:
        round=r"\d{3}",
        model=interleave.GROUP,
        tag=INTERLEAVED_TAG,
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        **CELL_PARAMS,
        # each model's cell id, as a plain round cell's (cells.smk cell_id)
        cell_ids=lambda w: [
            cell_id(SimpleNamespace(**{**dict(w.items()), "model": m, "tag": EXP.models[m].weights_tag}), w.round)
            for m in EXP.test_models(w.test)
        ],
        # the models' turn order in the process: drawn per round like a round's cell order
        order=lambda w: [
            EXP.test_models(w.test).index(m)
            for m in round_order(EXP.test_models(w.test), DESIGN.seed, int(w.round), DESIGN.mode)
        ],
        repetitions=lambda w: EXP.tests[w.test].repetitions or DESIGN.repetitions,
        rounds=round_fields,
    script:
        "../scripts/interleaved_cell.py"


checkpoint round_decision:
    input:
        records=lambda w: round_records_upto(w.device, w.round),
    output:
        decision=paths.round_decision("{device}", "{engine}", DESIGN.id, "{round}"),
    log:
        paths.round_decision("{device}", "{engine}", DESIGN.id, "{round}", "log"),
    wildcard_constraints:
        round=r"\d{3}",
    conda:
        "../../envs/pipeline.yaml"
    params:
        round=lambda w: int(w.round),
        order=lambda w: [str(c) for c in DESIGN.order(int(w.round))],
        like_next=lambda w: DESIGN.rounds_like(int(w.round) + 1, upto=int(w.round)),
        settings=ROUNDS,
        pairs=DESIGN.pairs,
    script:
        "../scripts/round_decision.py"


rule rounds_all:
    """Every round this device's decisions asked for, and the last decision (why it stopped)."""
    input:
        decisions=lambda w: round_decisions(),
        records=lambda w: round_records_upto(EXP.device_id, len(round_decisions()) - 1),
    output:
        rounds_done_file(),
    log:
        f"results/logs/rounds_all/{EXP.device_id}-{DESIGN.id}.log",
    conda:
        "../../envs/pipeline.yaml"
    params:
        device=EXP.device_id,
        engine=EXP.engine_id,
        design=DESIGN.id,
    script:
        "../scripts/rounds_done.py"
