"""Distillation: the student (:mod:`tracesynth.train.student`) and TRL SFT (:mod:`tracesynth.train.sft`).

Importing this package imports nothing heavy; torch, transformers and trl load inside the functions.
"""
