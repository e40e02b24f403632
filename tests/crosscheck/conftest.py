"""Nothing special: puts this directory on sys.path so tests can import pdf_crosscheck."""

from __future__ import annotations

import sys
from pathlib import Path

# Until pyproject.toml's [tool.pytest.ini_options] pythonpath lists "tests/crosscheck".
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
