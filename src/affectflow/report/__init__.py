"""The report and data-quality figures and tables.

- :mod:`~affectflow.report.plots`: matplotlib drawing shared by every figure, deterministic SVG;
- :mod:`~affectflow.report.scores`: the out-of-fold score table of runs and ensembles;
- :mod:`~affectflow.report.figures`: the score bars and OOF prediction figures;
- :mod:`~affectflow.report.curves`: the learning curves;
- :mod:`~affectflow.report.qc`: the data-quality tables and plots.

Each figure is written with a table of its numbers beside it.
"""
