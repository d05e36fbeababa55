"""bench.py's parts: harness (stages, viewers, one measured window), measurements (one function
per figure) and report (summary, tables, JSON, chart). Scripts import it as `benchlib`
(scripts/ is sys.path[0] when they run)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:  # the stages' packages, when a script runs from a checkout
    sys.path.insert(0, str(ROOT))
