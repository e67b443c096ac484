"""affectflow: raw videos of people to ABAW challenge submissions.

The package holds all logic; the Snakemake workflow in ``workflow/`` only wires it.
"""

__version__ = "0.1.0"
