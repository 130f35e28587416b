"""Throughput against round index per model, one figure per device (edgemoe.rounds.drift_figure)."""
import json
import sys

import pandas as pd

from edgemoe.records import read_jsonl
from edgemoe.rounds import drift_figure

sys.stderr = open(snakemake.log[0], "w")
p = snakemake.params
done = json.load(open(snakemake.input.done))
rows = []
for path, k in zip(done["records"], done["record_rounds"]):
    rows += [{**r, "round": k} for r in read_jsonl(path)]
drift_figure(pd.DataFrame(rows), p.models, snakemake.input.style, [snakemake.output.png, snakemake.output.pdf],
             title=f"{done['device']} ({done['engine']}): throughput per round, median of each round's repetitions")
