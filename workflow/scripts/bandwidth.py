"""Measure the device's memory bandwidth ceiling (STREAM-like read and copy; edgemoe.bandwidth)."""
import sys
from pathlib import Path

from edgemoe.bandwidth import build_stream, measure_stream
from edgemoe.process import bench_lock
from edgemoe.files import atomic_write_json

sys.stderr = open(snakemake.log[0], "w")
out = Path(snakemake.output[0])
exe = out.with_suffix(".stream")
build_stream(Path(snakemake.input.source), exe)
with bench_lock(snakemake.params.lock):
    result = measure_stream(exe, snakemake.params.threads)
result["kernel"] = "workflow/bench/stream.c (best of repetitions, 2 x 1 GiB arrays)"
atomic_write_json(out, result)
