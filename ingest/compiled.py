"""The one switch for ingest's compiled hot paths (``_chunk_c.pyx``, ``_tags_c.pyx``).

Each compiled module is the C twin of a Python reference with the same behaviour (tests run
both). The install builds them when a C compiler is at hand; without one, or with
``STREAMD_PURE_PYTHON=1`` (for debugging, and for benchmarks comparing the two), the Python
references run.
"""

from __future__ import annotations

import os

PURE_PYTHON_ENV = "STREAMD_PURE_PYTHON"


def pure_python_forced() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")
