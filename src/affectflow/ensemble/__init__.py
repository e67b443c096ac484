"""Ensembles fitted on out-of-fold predictions."""
