# Rounds (issue 6): a device's cells run in rounds; each round runs every (model, quant, test) once
# (`experiment.rounds.repetitions` repetitions, one llama-bench invocation) in an order shuffled per
# round from a recorded seed (edgemoe/rounds.py). Inside a round, each cell waits for the one before
# it; a round's first cell waits for the previous round's decision, which waits for every cell of
# that round: so rounds never overlap and resume where they stopped. After each round the
# `round_decision` checkpoint decides (edgemoe.rounds.decide) whether another round runs; the
# aggregate `rounds_all` reads the decisions one by one (the iterative-checkpoint pattern).
#
# Needs common.smk (EXP, BENCH_LOCK, build_dir). Targets: rounds_all (records + decisions, closed by
# results/rounds/<device>/<design>-stop-<rule>.done.json), figure_drift (figures/drift/<device>/<engine>.*).
import json

from edgemoe import rounds as R
from edgemoe.config import content_hash

ROUNDS_DEFAULTS = {
    "enabled": False,  # read by analysis.smk: whether the run table and figures/all include rounds
    "repetitions": 3,
    "order": "balanced",
    "seed": 20250601,
    "min_rounds": 3,
    "max_rounds": 20,
    "target_halfwidth": 0.02,
    "target_phase": "tg",
    "target_pairs": "all",
    "budget_s": None,
}
ROUNDS = {**ROUNDS_DEFAULTS, **(config["experiment"].get("rounds") or {})}
if not 1 <= ROUNDS["min_rounds"] <= ROUNDS["max_rounds"] <= 999:
    raise WorkflowError("Configuration error: experiment.rounds: need 1 <= min_rounds <= max_rounds <= 999, got "
                        f"{ROUNDS['min_rounds']} and {ROUNDS['max_rounds']}")
if ROUNDS["order"] not in R.ORDER_MODES:
    raise WorkflowError(f"Configuration error: experiment.rounds.order: {ROUNDS['order']!r}; allowed: "
                        + ", ".join(R.ORDER_MODES))
# With depth enabled, depth cells (edgemoe.depth) run in the rounds too, as cells of their own.
DEPTH_IN_ROUNDS = bool(ROUNDS["enabled"] and config.get("depth", {}).get("enabled"))
ROUND_CELLS = [R.cell_key(m, q, t) for m in EXP.models for q in EXP.quants
               for t in [*EXP.tests, *(EXP.depth_tests() if DEPTH_IN_ROUNDS else [])]]
ROUND_PAIRS = R.headline_pairs({m: EXP.models[m].family for m in EXP.models}, EXP.baseline, ROUNDS["target_pairs"])
# The design's identity (what is measured and in which order): another experiment's rounds live in
# another folder instead of overwriting these. Stopping settings (target, budget, max_rounds) are
# not part of it: raising the budget adds rounds to the same design.
DESIGN = "design-" + content_hash(
    [ROUND_CELLS, ROUNDS["repetitions"], ROUNDS["order"], ROUNDS["seed"], EXP.use_mmap,
     {m: EXP.models[m].weights_tag for m in EXP.models}, {t: EXP.tests[t] for t in EXP.tests},
     config["depth"] if DEPTH_IN_ROUNDS else None])[:8]
ROUND_DIR = "results/rounds/{device}/{engine}/" + DESIGN + "/r{round}"
# The stopping rule's identity, in the name of the file that closes the rounds (rules rounds_all):
# Snakemake does not look behind a checkpoint for an output that exists, so a new design or a
# changed budget or target must give that file a new name to reach the run table.
STOPPING = content_hash([ROUNDS[k] for k in ("min_rounds", "max_rounds", "target_halfwidth", "target_phase",
                                              "target_pairs", "budget_s")])[:6]


def rounds_done_file(device=None):
    return f"results/rounds/{device or EXP.device_id}/{DESIGN}-stop-{STOPPING}.done.json"


def round_tag(k):
    return f"{int(k):03d}"


def round_cell_file(device, engine, k, key, ext="jsonl"):
    m, q, t = R.split_key(key)
    return f"results/rounds/{device}/{engine}/{DESIGN}/r{round_tag(k)}/{m}/{EXP.models[m].weights_tag}/{q}/{t}.{ext}"


def round_decision_file(device, engine, k):
    return f"results/rounds/{device}/{engine}/{DESIGN}/r{round_tag(k)}/decision.json"


def round_order_of(k):
    return R.round_order(ROUND_CELLS, ROUNDS["seed"], int(k), ROUNDS["order"])


def round_cell_input(w):
    """The cell's build and model, and (ancient: ordering only, a rerun upstream does not cascade)
    the job before it in the chain."""
    test = w.test if hasattr(w, "test") else w.dtest
    inputs = {
        "build": depth_build(w) if hasattr(w, "dtest") else f"{build_dir(w.device)}/build-info.json",
        "gguf": f"results/models/{w.model}/{w.tag}/{w.quant}.gguf",
        "model_info": f"results/models/{w.model}/{w.tag}/{w.quant}.json",
    }
    after = R.predecessor(ROUND_CELLS, ROUNDS["seed"], int(w.round), R.cell_key(w.model, w.quant, test),
                          ROUNDS["order"])
    if after is not None:
        prev = (round_decision_file(w.device, w.engine, after.round) if after.cell is None
                else round_cell_file(w.device, w.engine, after.round, after.cell))
        inputs["after"] = ancient(prev)
    return inputs


def round_records_upto(device, engine, k):
    """Every cell of rounds 0..k, with the round of each (aligned lists)."""
    files, ks = [], []
    for j in range(int(k) + 1):
        for c in ROUND_CELLS:
            files.append(round_cell_file(device, engine, j, c))
            ks.append(j)
    return files, ks


def round_decisions(device=None, engine=None):
    """Decision files of the rounds run so far, up to the one that said stop. Reading decision k
    before asking for decision k+1 makes Snakemake run round k first (checkpoint)."""
    device, engine = device or EXP.device_id, engine or EXP.engine_id
    out = []
    for k in range(ROUNDS["max_rounds"]):
        f = checkpoints.round_decision.get(device=device, engine=engine, round=round_tag(k)).output.decision
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
        done = sorted(glob.glob(f"results/rounds/{glob.escape(d)}/{DESIGN}-stop-*.done.json"), key=os.path.getmtime)
        if d != EXP.device_id and done:
            out.append(done[-1])
    return out


rule round_cell:
    params:
        cell_id=lambda w: f"{w.device}/{w.engine}/{w.model}/{w.tag}/{w.quant}/{w.test}/r{w.round}",
        device=lambda w: EXP.devices[w.device],
        test=lambda w: EXP.tests[w.test],
        repetitions=ROUNDS["repetitions"],
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        memory_limit_gb=config.get("cell_memory_limit_gb"),
        lock=BENCH_LOCK,
        round=lambda w: int(w.round),
        position=lambda w: round_order_of(w.round).index(R.cell_key(w.model, w.quant, w.test)),
        seed=ROUNDS["seed"],
        order=ROUNDS["order"],
    input:
        unpack(round_cell_input),
    output:
        records=ROUND_DIR + "/{model}/{tag}/{quant}/{test}.jsonl",
        raw=ROUND_DIR + "/{model}/{tag}/{quant}/{test}.llama-bench.jsonl",
    log:
        ROUND_DIR + "/{model}/{tag}/{quant}/{test}.stderr.log",
    wildcard_constraints:
        round=r"\d{3}",
    threads: workflow.cores
    resources:
        bench=1,
    script:
        "../scripts/round_cell.py"


rule round_depth_cell:
    """A depth cell inside the rounds (workflow/scripts/depth_cell.py with the round's fields)."""
    params:
        cell_id=lambda w: f"{w.device}/{w.engine}/{w.model}/{w.tag}/{w.quant}/{w.dtest}/r{w.round}",
        device=lambda w: EXP.devices[w.device],
        settings=config["depth"],
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        lock=BENCH_LOCK,
        round=lambda w: int(w.round),
        position=lambda w: round_order_of(w.round).index(R.cell_key(w.model, w.quant, w.dtest)),
        seed=ROUNDS["seed"],
    input:
        unpack(round_cell_input),
    output:
        records=ROUND_DIR + "/{model}/{tag}/{quant}/{dtest}.jsonl",
        summary=ROUND_DIR + "/{model}/{tag}/{quant}/{dtest}.summary.json",
        raw=directory(ROUND_DIR + "/{model}/{tag}/{quant}/{dtest}.raw"),
    log:
        ROUND_DIR + "/{model}/{tag}/{quant}/{dtest}.stderr.log",
    wildcard_constraints:
        round=r"\d{3}",
        dtest=r"depth\d+[-a-z0-9_]*",
    threads: workflow.cores
    resources:
        bench=1,
    script:
        "../scripts/depth_cell.py"


checkpoint round_decision:
    params:
        round=lambda w: int(w.round),
        record_rounds=lambda w: round_records_upto(w.device, w.engine, w.round)[1],
        order=lambda w: round_order_of(w.round),
        order_mode=ROUNDS["order"],
        seed=ROUNDS["seed"],
        pairs=ROUND_PAIRS,
        target_halfwidth=ROUNDS["target_halfwidth"],
        phase=ROUNDS["target_phase"],
        budget_s=ROUNDS["budget_s"],
        min_rounds=ROUNDS["min_rounds"],
        max_rounds=ROUNDS["max_rounds"],
    input:
        records=lambda w: round_records_upto(w.device, w.engine, w.round)[0],
    output:
        decision=ROUND_DIR + "/decision.json",
    log:
        ROUND_DIR + "/decision.log",
    wildcard_constraints:
        round=r"\d{3}",
    script:
        "../scripts/round_decision.py"


rule rounds_all:
    """Every round this device's decisions asked for, and the last decision (why it stopped)."""
    input:
        decisions=lambda w: round_decisions(),
        records=lambda w: round_records_upto(EXP.device_id, EXP.engine_id, len(round_decisions()) - 1)[0],
    params:
        record_rounds=lambda w: round_records_upto(EXP.device_id, EXP.engine_id, len(round_decisions()) - 1)[1],
    output:
        rounds_done_file(),
    run:
        from edgemoe.files import atomic_write_json

        last = json.loads(open(input.decisions[-1]).read())
        atomic_write_json(output[0], {
            "device": EXP.device_id, "engine": EXP.engine_id, "design": DESIGN, "rounds": len(input.decisions),
            "stopped": last["reason"], "target_halfwidth": last["target_halfwidth"],
            "worst_halfwidth": last["worst_halfwidth"], "used_s": last["used_s"],
            "decisions": list(input.decisions), "records": list(input.records),
            "record_rounds": list(params.record_rounds),
        })


rule figure_drift:
    params:
        models=list(EXP.models),
    input:
        done=rounds_done_file(),
        style="workflow/figures.mplstyle",
    output:
        png=f"figures/drift/{EXP.device_id}/{EXP.engine_id}.png",
        pdf=f"figures/drift/{EXP.device_id}/{EXP.engine_id}.pdf",
    log:
        f"results/logs/figure_drift/{EXP.device_id}-{EXP.engine_id}.log",
    script:
        "../scripts/figure_drift.py"
