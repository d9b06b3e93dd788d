"""The web app's sources and the fingerprint its committed build carries.

The built bundle (``web/ui/dist``) is committed, so ``./dev run`` needs no Node.js. ``./dev ui``
rebuilds it and writes :func:`source_hash` of the sources it was built from into
``dist/.source-hash``; a test compares that with the sources in the tree, so a change to the app
that was not rebuilt fails the suite instead of shipping a stale bundle.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

UI_ROOT = Path(__file__).resolve().parent / "ui"
STAMP_NAME = ".source-hash"
# What the build reads; generated files (components.d.ts) and outputs are not sources.
_FILES = ("index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json",
          "env.d.ts")  # fmt: skip
_TREES = ("src", "public")


def source_files(root: Path = UI_ROOT) -> list[Path]:
    files = [root / name for name in _FILES if (root / name).is_file()]
    for tree in _TREES:
        files.extend(p for p in (root / tree).rglob("*") if p.is_file())
    return sorted(files)


def source_hash(root: Path = UI_ROOT) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        # Line endings normalised: a checkout with autocrlf builds the same app.
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


def built_hash(root: Path = UI_ROOT) -> str | None:
    stamp = root / "dist" / STAMP_NAME
    return stamp.read_text().strip() if stamp.is_file() else None


if __name__ == "__main__":  # ./dev ui: python -m web.ui_source stamp
    if sys.argv[1:] == ["stamp"]:
        (UI_ROOT / "dist" / STAMP_NAME).write_text(source_hash() + "\n")
    else:
        print(source_hash())
