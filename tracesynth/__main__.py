"""``python -m tracesynth``: the same as the ``tracesynth`` command."""

from tracesynth.cli import main

if __name__ == "__main__":
    main()
