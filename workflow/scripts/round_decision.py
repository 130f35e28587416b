"""After round k: another round, or stop ('target met', 'budget spent', 'max rounds')
(edgemoe.rounds.decide). The decision records the round's seed and order."""

import pandas as pd

from edgemoe.files import atomic_write_json
from edgemoe.records import read_jsonl
from edgemoe.rounds import decide

p, w = snakemake.params, snakemake.wildcards
with open(snakemake.log[0], "w") as log:
    rows = []
    for path, k in zip(snakemake.input.records, p.record_rounds):
        rows += [{**r, "round": k} for r in read_jsonl(path)]  # the round is the file's, whatever the fields
    d = decide(pd.DataFrame(rows), p.target_halfwidth, p.budget_s, None, [tuple(x) for x in p.pairs],
               min_rounds=p.min_rounds, max_rounds=p.max_rounds, phase=p.phase)
    d.update(device=w.device, engine=w.engine, round=p.round, seed=p.seed, order_mode=p.order_mode,
             order=list(p.order), records=list(snakemake.input.records))
    atomic_write_json(snakemake.output.decision, d)
    print(f"round {p.round}: {'continue' if d['continue'] else 'stop'} ({d['reason']}); "
          f"worst halfwidth {d['worst_halfwidth']}, used {d['used_s']:.0f} s", file=log)
    for r in d["ratios"]:
        print(f"  {r['num']}/{r['den']} {r.get('quant')} {r.get('test')}: {r['value']} [{r['lo']}, {r['hi']}] "
              f"n={r['n_rounds']} halfwidth={r['halfwidth']}", file=log)
