"""Packaging guards: platform/ never shadows the standard platform module."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_the_standard_platform_module_is_not_shadowed_at_the_repo_root():
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import platform, ray, pandas; print(platform.system())"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("Linux", "Darwin", "Windows")


def test_raysight_modules_map_from_the_top_level_folders():
    import raysight.analyses
    import raysight.connectors
    import raysight.engine.executor
    import raysight.exporters

    assert raysight.engine.executor.__file__.endswith("platform/engine/executor.py")
    assert raysight.connectors.__file__.endswith("connectors/__init__.py")
    assert raysight.analyses.__file__.endswith("analyses/__init__.py")
    assert raysight.exporters.__file__.endswith("exporters/__init__.py")


def test_pyproject_lists_every_package_folder():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {name: REPO_ROOT / folder for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            if "__pycache__" in sub.parts or not any(sub.glob("*.py")):
                continue
            found.add(".".join([name, *sub.relative_to(folder).parts]))
    assert found == set(config["packages"])
