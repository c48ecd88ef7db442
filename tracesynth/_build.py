"""Build hook (used by setuptools only, never at run time): ship ``prompts/`` and ``data/`` in the wheel.

``pyproject.toml`` points ``[tool.setuptools.cmdclass] build_py`` here. After the normal
``build_py`` step the two top-level resource folders are copied into the built package as
``tracesynth/_shipped/prompts`` and ``tracesynth/_shipped/data``, where
:func:`tracesynth.sources.resources.resource_dir` finds them in an installed copy. Editable installs
skip the copy and read the folders of the checkout directly. ``MANIFEST.in`` puts both folders
into source distributions so that a wheel built from an sdist has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py

_RESOURCES = ("prompts", "data")


class BuildPyWithResources(build_py):
    """``build_py`` that also copies the top-level resource folders into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent.parent
        for name in _RESOURCES:
            src = root / name
            if not src.is_dir():
                raise FileNotFoundError(f"{src}: resource folder missing from the source tree")
            dst = Path(self.build_lib) / "tracesynth" / "_shipped" / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
