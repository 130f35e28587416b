"""edge-moe-bench: the logic behind the Snakemake workflow.

Modules never import Snakemake; the scripts under workflow/scripts are thin wrappers around them.
"""

__version__ = "0.1.0"
