"""Which chunk decoder the connection uses: the compiled twin when it was built, else Python.

``_chunk_c.pyx`` compiles ``chunk.ChunkDecoder`` (the reference) to C with Cython when the
package is installed with a C compiler at hand (``pip install``/``./dev`` do it; the Docker
build stage has gcc). Both give the same messages and errors (the chunk tests run against
both). ``STREAMD_PURE_PYTHON=1`` forces the Python one (see :mod:`ingest.compiled`).
"""

from __future__ import annotations

from typing import cast

from ingest.compiled import pure_python_forced

from . import chunk


def compiled_decoder() -> type[chunk.ChunkDecoder] | None:
    """The compiled decoder class, or None when the extension was not built."""
    try:
        from ._chunk_c import ChunkDecoder as compiled
    except ImportError:
        return None
    # Same interface (see _chunk_c.pyi); a class of its own, not a subclass.
    return cast(type[chunk.ChunkDecoder], compiled)


def _pick() -> type[chunk.ChunkDecoder]:
    if pure_python_forced():
        return chunk.ChunkDecoder
    return compiled_decoder() or chunk.ChunkDecoder


ChunkDecoder = _pick()
#: True when the connection decodes chunks in C.
COMPILED = ChunkDecoder is not chunk.ChunkDecoder
