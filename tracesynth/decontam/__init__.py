"""Decontamination: a word n-gram index of the evaluation sets, used before paying (harvest) and in curation.

:mod:`.index` builds and queries the index and filters problems; :mod:`.cache` keeps it on disk.
"""
