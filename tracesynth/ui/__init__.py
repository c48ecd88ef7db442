"""What the user sees while a stage runs: :mod:`.progress` (one progress bar / log-line helper)."""
