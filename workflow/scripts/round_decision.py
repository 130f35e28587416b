"""After round k: another round, or stop ('target met', 'budget spent', 'max rounds')
(edgemoe.stopping.decide). The decision records the round's seed and order."""

import pandas as pd

from edgemoe.files import atomic_write_json
from edgemoe.records import read_jsonl
from edgemoe.stopping import decide

p, w, s = snakemake.params, snakemake.wildcards, snakemake.params.settings
with open(snakemake.log[0], "w") as log:
    rows = [r for path in snakemake.input.records for r in read_jsonl(path)]
    d = decide(pd.DataFrame(rows), s["target_halfwidth"], s["budget_s"], None, [tuple(x) for x in p.pairs],
               min_rounds=s["min_rounds"], max_rounds=s["max_rounds"], phase=s["target_phase"],
               interval=s["interval"], like_next=p.like_next)
    d.update(device=w.device, engine=w.engine, round=p.round, seed=s["seed"], order_mode=s["order"],
             order=list(p.order), records=list(snakemake.input.records))
    atomic_write_json(snakemake.output.decision, d)
    print(f"round {p.round}: {'continue' if d['continue'] else 'stop'} ({d['reason']}); "
          f"worst halfwidth {d['worst_halfwidth']}, used {d['used_s']:.0f} s", file=log)
    for r in d["ratios"]:
        print(f"  {r['num']}/{r['den']} {r.get('quant')} {r.get('test')}: {r['value']} [{r['lo']}, {r['hi']}] "
              f"n={r['n_rounds']} halfwidth={r['halfwidth']}", file=log)
