"""Fetch one device's latest snapshot from the store, every file checked against its manifest
(edgemoe.store.fetch); the snapshot's manifest is written last, as this job's output."""
import sys
from pathlib import Path

from edgemoe.store import Store, StoreError, fetch

w = snakemake.wildcards
with open(snakemake.log[0], "w") as log:
    try:
        manifest = fetch(Store.from_config(snakemake.params.store), w.udevice, Path(snakemake.output[0]).parent,
                         snapshot=w.snapshot)
    except StoreError as e:
        print(e, file=log)
        sys.exit(str(e))
    print(f"{w.udevice}: snapshot {manifest['snapshot']}, {len(manifest['files'])} files checked", file=log)
