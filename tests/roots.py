"""Paths of the checkout that tests read (spaces, references), wherever the test file sits."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACES_DIR = ROOT / "search_spaces"
