"""Run counters a test can read from outside the server process (off unless asked for).

Why: "a slider step recomputes the decoded image and nothing else" is a claim about which code
the *server* ran, and only a real server runs fragments the way a browser triggers them (AppTest
reruns whole scripts). With ``$DISVIZ_RUN_COUNTS`` naming a file, each ``count(name)`` rewrites that
file atomically as JSON; without it, ``count`` returns at once.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

ENV = "DISVIZ_RUN_COUNTS"
_counts: Counter[str] = Counter()
_lock = threading.Lock()


def count(name: str) -> None:
    """Add one to counter ``name`` (only when $DISVIZ_RUN_COUNTS is set)."""
    target = os.environ.get(ENV)
    if not target:
        return
    with _lock:
        _counts[name] += 1
        tmp = Path(f"{target}.tmp")
        tmp.write_text(json.dumps(dict(_counts)), encoding="utf-8")
        os.replace(tmp, target)


def read_counts(path: str | os.PathLike[str]) -> dict[str, int]:
    """The counters a server wrote (empty before its first count)."""
    try:
        return {str(k): int(v) for k, v in json.loads(Path(path).read_text(encoding="utf-8")).items()}
    except (OSError, ValueError):
        return {}
