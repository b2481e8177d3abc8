"""Real vertebra masks shipped with the package (see README.md here for sources and licences)."""
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
MANIFEST = DATA_DIR / "manifest.csv"
