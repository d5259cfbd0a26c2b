"""Where the harness finds its manifests and scripts: env setting, checkout, package data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    paths.kit_root.cache_clear()
    yield
    paths.kit_root.cache_clear()


def _fake_kit(root: Path) -> Path:
    for marker in paths._MARKERS:
        (root / marker).parent.mkdir(parents=True, exist_ok=True)
        (root / marker).write_text("x")
    return root


def test_checkout_is_the_kit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPA_KIT_HOME", raising=False)
    assert paths.kit_root() == REPO
    assert paths.manifests_dir() == REPO / "manifests"


def test_home_setting_wins_and_a_wrong_one_says_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPA_KIT_HOME", str(_fake_kit(tmp_path / "kit")))
    assert paths.kit_root() == tmp_path / "kit"
    paths.kit_root.cache_clear()
    monkeypatch.setenv("HPA_KIT_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(paths.KitError, match=r"HPA_KIT_HOME=.*nowhere.*point it at a checkout"):
        paths.kit_root()


def test_installed_package_uses_its_shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # site-packages/harness has no manifests/ beside it; its kit/ folder has them.
    monkeypatch.delenv("HPA_KIT_HOME", raising=False)
    package = tmp_path / "site-packages" / "harness"
    _fake_kit(package / "kit")
    monkeypatch.setattr(paths, "_PACKAGE", package)
    assert paths.kit_root() == package / "kit"
    paths.kit_root.cache_clear()
    (package / "kit" / "scripts" / "versions.env").unlink()
    with pytest.raises(paths.KitError, match="reinstall hpa-kit"):
        paths.kit_root()


def test_the_repo_ships_every_folder_the_harness_reads() -> None:
    # harness/kit/ links each top-level folder the harness opens at run time; a missing link means a
    # wheel without it (and an installed harness that fails only on a user's machine).
    kit = REPO / "harness" / "kit"
    for name in ("manifests", "scripts", "images", "adapter", "mockmetrics", "pyproject.toml"):
        link = kit / name
        assert link.is_symlink(), f"harness/kit/{name} must be a symlink to ../../{name}"
        assert link.resolve() == REPO / name, f"harness/kit/{name} must link ../../{name}"
    # The images' build context also needs the console scripts' entry module (not the whole package:
    # harness/kit/harness/ links just those files, so the package data holds no copy of itself).
    for name in ("__init__.py", "entry.py"):
        assert (kit / "harness" / name).resolve() == REPO / "harness" / name
    assert paths._is_kit(kit)
