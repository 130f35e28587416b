# Several devices, one result set (edgemoe/store.py, edgemoe/store_snapshot.py): `snakemake push`
# runs this device's cells, then publishes one immutable snapshot of its records on the S3-compatible
# store (`store.url`) and moves the device's pointer to it; `--config runs=union` builds every table
# and figure from the latest snapshot of each device in `store.devices`, fetched and checked, with
# no build, model or cell in the DAG. Credentials: boto3's own chain (environment, AWS_PROFILE).
#
# Needs common.smk (EXP, MEASURING, NOTHING), rounds.smk (ROUNDS, DESIGN, rounds_done_file).
from edgemoe import store as STORE
from edgemoe import store_snapshot as SNAPSHOT
from edgemoe.config import content_hash

STORE_CFG = config.get("store") or {}


def _union_manifests():
    """runs=union: each listed device's latest manifest, read and checked when the DAG is planned
    (an unreachable store, wrong credentials or a tampered manifest stop here, naming the device)."""
    if EXP.runs != "union":
        return {}
    try:
        store = STORE.Store.from_config(STORE_CFG)
        if not STORE_CFG.get("devices"):
            raise STORE.StoreError("store.devices: runs=union needs the devices to take (a list of device ids)")
        STORE.check_access(store)
        return {d: STORE.read_manifest(store, d) for d in STORE_CFG["devices"]}
    except STORE.StoreError as e:
        raise WorkflowError(f"Store error: {e}") from None


UNION = _union_manifests()
UNION_SNAPSHOTS = {d: m["snapshot"] for d, m in UNION.items()}
UNION_KINDS = {k for m in UNION.values() for k in m.get("kinds", [])}


def union_snapshot_files():
    return [SNAPSHOT.fetched(d, s) for d, s in UNION_SNAPSHOTS.items()]


def push_inputs(wildcards):
    """This device's run records (as its run table reads them), and the files that say what made them."""
    d = EXP.device_id
    records = [] if ROUNDS["enabled"] else EXP.cells(d) + EXP.prompt_cells(d)
    records += EXP.profile_cells(d) + ([] if DEPTH_IN_ROUNDS else EXP.depth_cells(d))
    return {
        "records": records,
        "rounds": [rounds_done_file()] if ROUNDS["enabled"] else [],
        "context": [paths.bandwidth(d)]
        + [paths.build_info(e, d) for e in EXP.engine_ids]
        + [EXP.model_file(m, q, "json") for m in EXP.models for q in EXP.quants],
    }


def store_preflight(jobs):
    """Pre-flight (faults.smk): a push planned in this run needs the store reachable with working
    credentials before any cell runs."""
    if not any(j.rule == "push" for j in jobs):
        return []
    try:
        return [STORE.check_access(STORE.Store.from_config(STORE_CFG), EXP.device_id)]
    except STORE.StoreError as e:
        raise WorkflowError(f"pre-flight: {e}") from None


if MEASURING:

    rule push:
        """This device's snapshot on the store (after its cells): `snakemake --cores 4 push`."""
        input:
            unpack(push_inputs),
        output:
            SNAPSHOT.pushed(EXP.device_id),
        log:
            f"results/logs/push/{EXP.device_id}.log",
        conda:
            "../../envs/pipeline.yaml"
        params:
            store=STORE_CFG,
            device=EXP.device_id,
            config_sha256=content_hash(config),
            design=DESIGN.id if ROUNDS["enabled"] else None,
        script:
            "../scripts/push.py"


rule union_fetch:
    """One device's latest snapshot, fetched and checked (runs=union)."""
    output:
        SNAPSHOT.fetched("{udevice}", "{snapshot}"),
    log:
        "results/logs/union_fetch/{udevice}-{snapshot}.log",
    wildcard_constraints:
        udevice="|".join(map(re.escape, UNION)) or NOTHING,
        snapshot=r"\d{8}T\d{6}Z-[0-9a-f]{12}",
    conda:
        "../../envs/pipeline.yaml"
    params:
        store=STORE_CFG,
    script:
        "../scripts/union_fetch.py"
