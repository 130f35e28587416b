"""Twin generation rate beside this machine's sequential write rate, measured in one run.

    python tools/twin_write_rate.py --model olmoe-1b-7b [--dir results/tmp] [--repeat 2]

Writes the model's F16 shape twin (edgemoe.twins.write_twin) and a `dd bs=16M conv=fsync` of the
same size into the same folder, alternately, deleting each file after timing it."""
import argparse
import subprocess
import time
from pathlib import Path

import yaml

from edgemoe.architectures import ArchSpec
from edgemoe.twins import load_vocab, vocab_name, write_twin

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="olmoe-1b-7b")
ap.add_argument("--dir", default="results/tmp", type=Path)
ap.add_argument("--engine-src", default="results/engine/llama.cpp-f7cd13301/source", type=Path)
ap.add_argument("--repeat", default=2, type=int)
a = ap.parse_args()
cfg = yaml.safe_load(open("config/config.yaml"))
spec = ArchSpec.from_config(a.model, cfg["models"][a.model]["spec"])
vocab = load_vocab(a.engine_src, vocab_name(spec), Path("results/vocab"))
a.dir.mkdir(parents=True, exist_ok=True)
for k in range(a.repeat):
    twin = a.dir / "rate-twin.gguf"
    t0 = time.monotonic()
    write_twin(spec, a.model, 1, vocab, twin, progress=False)
    t_twin = time.monotonic() - t0
    size = twin.stat().st_size
    twin.unlink()
    dd = a.dir / "rate-dd.bin"
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={dd}", "bs=16M", f"count={size // (16 << 20)}", "conv=fsync"],
                   check=True, capture_output=True)
    t_dd = time.monotonic() - t0
    dd_size = dd.stat().st_size
    dd.unlink()
    print(f"round {k}: twin {size / 1e9:.2f} GB in {t_twin:.1f} s = {size / 1e9 / t_twin:.2f} GB/s; "
          f"dd {dd_size / 1e9:.2f} GB in {t_dd:.1f} s = {dd_size / 1e9 / t_dd:.2f} GB/s; "
          f"twin/dd = {(size / t_twin) / (dd_size / t_dd):.2f}", flush=True)
