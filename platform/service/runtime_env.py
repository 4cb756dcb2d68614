"""The Ray runtime environment that makes raysight importable on a cluster without it.

::

    modules = raysight_py_modules()      # [<cache>/<hash>/pkg/raysight, .../raysight-*.dist-info]
    {"py_modules": modules, "working_dir": "."}

raysight's folders are mapped into one import namespace by ``package-dir`` (DESIGN.md §1), so
the checkout is not one importable folder: a wheel is built from it (setuptools applies the
mapping, the package data and the entry points) and unpacked once per source hash into
``~/.cache/raysight/py_modules``. The wheel is not handed to Ray as a ``.whl``: Ray installs a
wheel with ``pip install --target``, which also installs every dependency (Ray, pandas, ...)
into the job's folder, ignoring what the cluster has, and needs a package index. The unpacked
package and its ``.dist-info`` (where the plugin entry points live: without it no connector,
kernel or exporter is registered) travel as two ``py_modules`` directories instead; the
cluster provides raysight's dependencies, as a Ray image provides Ray. A non-editable install
has no checkout to build: its installed package and ``.dist-info`` travel as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from raysight.errors import InputError

log = logging.getLogger(__name__)

DIST = "raysight"
_SOURCE_SUFFIXES = (".py", ".j2", ".toml", ".typed")


def cache_root() -> Path:
    """Where unpacked builds are kept: ``RAYSIGHT_CACHE_DIR`` or ``~/.cache/raysight``."""
    return Path(os.environ.get("RAYSIGHT_CACHE_DIR") or Path.home() / ".cache" / "raysight")


def raysight_py_modules() -> list[str]:
    """Two directories for ``py_modules``: the ``raysight`` package and its ``.dist-info``."""
    checkout = source_checkout()
    if checkout is not None:
        target = cache_root() / "py_modules" / source_hash(checkout)
        if not (target / "done").exists():
            _build_into(checkout, target)
        return _modules_in(target / "pkg")
    dist = metadata.distribution(DIST)
    package = Path(str(dist.locate_file(DIST)))
    info = Path(str(dist._path))  # type: ignore[attr-defined]  # the .dist-info folder
    return [str(package), str(info)]


def source_checkout() -> Path | None:
    """The source folder of an editable install (a checkout), or None for a built install."""
    try:
        direct = metadata.distribution(DIST).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
    if direct:
        info = json.loads(direct)
        if info.get("dir_info", {}).get("editable") and info["url"].startswith("file://"):
            return Path(info["url"].removeprefix("file://"))
    here = Path(__file__).resolve().parents[2]  # <checkout>/platform/service/runtime_env.py
    return here if (here / "pyproject.toml").exists() and (here / "platform").is_dir() else None


def source_hash(checkout: Path) -> str:
    """A digest of what a build of the checkout contains (sources, templates, pyproject)."""
    import tomllib

    config = tomllib.loads((checkout / "pyproject.toml").read_text(encoding="utf-8"))
    folders = sorted(set(config["tool"]["setuptools"]["package-dir"].values()))
    digest = hashlib.sha256((checkout / "pyproject.toml").read_bytes())
    for folder in folders:
        for path in sorted((checkout / folder).rglob("*")):
            if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(checkout)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _build_into(checkout: Path, target: Path) -> None:
    """Build a wheel of the checkout and unpack it into ``target/pkg``."""
    with tempfile.TemporaryDirectory(prefix="raysight-wheel-") as tmp:
        source = _source_copy(checkout, Path(tmp) / "src")
        wheel = _wheel(source, Path(tmp) / "dist")
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=_made(target.parent)))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(staging / "pkg")
        (staging / "done").write_text(wheel.name, encoding="utf-8")
        try:
            staging.rename(target)  # whole or not at all, even with two submits at once
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process finished first


def _source_copy(checkout: Path, into: Path) -> Path:
    """What a build reads, copied: setuptools' ``build/`` folder in a checkout keeps modules
    that were deleted since, and would ship them."""
    import tomllib

    config = tomllib.loads((checkout / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(config["tool"]["setuptools"]["package-dir"].values())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in folders:
        shutil.copytree(checkout / folder, into / folder, ignore=ignore)
    for name in ("pyproject.toml", config["project"].get("readme", "README.md")):
        if (checkout / name).exists():
            shutil.copy(checkout / name, into / name)
    return into


def _wheel(source: Path, out: Path) -> Path:
    """``pip wheel`` of ``source``: with the build tools of this environment when it has
    them (offline, fast), else with the ones pyproject asks for (from the package index)."""
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
            str(out), str(source)]
    proc = None
    for command in ([*base[:5], "--no-build-isolation", *base[5:]], base):
        log.info("building a raysight wheel for the cluster: %s", " ".join(command))
        proc = subprocess.run(command, capture_output=True, text=True, cwd=source)
        wheels = sorted(out.glob(f"{DIST}-*.whl"))
        if proc.returncode == 0 and wheels:
            return wheels[0]
    assert proc is not None
    tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines()
            if not line.startswith("WARNING: Location")][-3:]
    raise InputError(f"could not build a raysight wheel from {source} to send to the cluster "
                     f"(pip wheel failed: {' / '.join(tail)})", path=str(source))


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _modules_in(pkg: Path) -> list[str]:
    infos = sorted(pkg.glob(f"{DIST}-*.dist-info"))
    if not (pkg / DIST).is_dir() or not infos:
        raise InputError(f"the raysight build in {pkg} is incomplete; delete it and submit "
                         "again", path=str(pkg))
    return [str(pkg / DIST), str(infos[0])]
