"""Close a device's rounds: how many ran, why they stopped, and every record file (collect_runs
reads this list)."""
import json

from edgemoe.files import atomic_write_json

p, i = snakemake.params, snakemake.input
last = json.loads(open(i.decisions[-1]).read())
atomic_write_json(snakemake.output[0], {
    "device": p.device, "engine": p.engine, "design": p.design, "rounds": len(i.decisions),
    "stopped": last["reason"], "target_halfwidth": last["target_halfwidth"],
    "worst_halfwidth": last["worst_halfwidth"], "used_s": last["used_s"],
    "decisions": list(i.decisions), "records": list(i.records),
})
