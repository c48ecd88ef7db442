"""Where the tests find the repository's own files: the checkout, its data/, recipes/ and the test fixtures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
RECIPES = REPO / "recipes"
FIXTURES = REPO / "tests" / "fixtures"
