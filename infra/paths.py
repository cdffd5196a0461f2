"""Where the local stack keeps its state: `GATEWAY_HOME`, by default `.gateway/` in the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def home() -> Path:
    path = Path(os.environ.get("GATEWAY_HOME", REPO / ".gateway"))
    path.mkdir(parents=True, exist_ok=True)
    return path
