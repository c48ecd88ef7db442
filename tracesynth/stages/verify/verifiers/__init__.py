"""Verifiers: one module each (math, code with its sandbox, choice, gym, judge, format) and their shared helpers."""
