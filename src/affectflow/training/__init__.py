"""Training: run settings, sequences and their alignment, the loop, augmentation, fold orchestration.

Kept empty of imports so that a light module (``affectflow.training.recipes``) can be imported
without torch, and so that ``affectflow.models`` can use ``training.checkpoints`` without a cycle.
"""
