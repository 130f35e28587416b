"""Publish this device's records as one snapshot on the store and move its pointer (edgemoe.store);
the receipt (the manifest) is this job's output."""
import sys

from edgemoe.files import atomic_write_json
from edgemoe.store import Store, StoreError, push
from edgemoe.store_snapshot import manifest_meta, push_files

p, i = snakemake.params, snakemake.input
with open(snakemake.log[0], "w") as log:
    try:
        files, records = push_files(i.records, i.rounds, i.context)
        meta = manifest_meta(records, p.config_sha256, p.design)
        manifest = push(Store.from_config(p.store), p.device, files, records, meta,
                        log=lambda line: print(line, file=log, flush=True))
    except (StoreError, FileNotFoundError) as e:
        print(e, file=log)
        sys.exit(str(e))
    atomic_write_json(snakemake.output[0], manifest)
    print(f"push: device {p.device}: snapshot {manifest['snapshot']}", file=sys.stderr)
