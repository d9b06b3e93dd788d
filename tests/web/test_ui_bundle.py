"""The committed web app build matches its sources (``./dev ui`` rebuilds it): a change to
``web/ui`` that was not rebuilt fails here instead of shipping a stale bundle."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from web.ui_source import UI_ROOT, built_hash, source_files, source_hash


def test_the_committed_build_was_made_from_the_sources_in_the_tree() -> None:
    assert built_hash() is not None, "web/ui/dist is missing: run ./dev ui"
    assert built_hash() == source_hash(), (
        "web/ui changed since web/ui/dist was built: run ./dev ui and commit web/ui/dist"
    )


def test_the_fingerprint_changes_with_any_source_file(tmp_path: Path) -> None:
    copy = tmp_path / "ui"
    for path in source_files():
        target = copy / path.relative_to(UI_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    before = source_hash(copy)
    assert before == source_hash()
    view = copy / "src" / "views" / "HomeView.vue"
    view.write_text(view.read_text() + "\n")
    assert source_hash(copy) != before
    view.unlink()
    assert source_hash(copy) not in (before, "")


def test_every_asset_the_index_names_is_in_the_build_with_a_gzip_twin() -> None:
    dist = UI_ROOT / "dist"
    index = (dist / "index.html").read_text()
    names = re.findall(r'(?:src|href)="/(assets/[^"]+)"', index)
    assert any(n.endswith(".js") for n in names), index
    for name in names:
        assert (dist / name).is_file(), name
        assert (dist / f"{name}.gz").is_file(), name
