"""Copy the release's headline table and gap figure (built from the release) next to its records."""
import shutil
import sys

from edgemoe.files import atomic_path

sys.stderr = open(snakemake.log[0], "w")
if snakemake.config["runs"] != "released":
    sys.exit("release_headline: run it with --config runs=released release=<id> (the headline of a release "
             "is made from the release alone)")
for key in snakemake.output.keys():
    with atomic_path(snakemake.output[key]) as tmp:
        shutil.copyfile(snakemake.input[key], tmp)
