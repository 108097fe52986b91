"""Packaging (issue 25, acceptance 5): ``python -m build`` makes a wheel and an sdist with the package data, and the
wheel installed into a clean virtual environment runs ``polymodal --version`` and a tiny ``polymodal demo``.

Offline and without downloads: the build runs without isolation (setuptools comes from this environment), and the
clean venv sees this environment's site-packages through a ``.pth`` line (the dependencies; a .pth line adds one
folder and does not run that folder's own .pth files, so this checkout's editable install stays out), while
polymodal itself is installed from the wheel with ``pip install --no-deps --no-index`` through constraints.txt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT

#: Files besides Python modules that the package reads at run time (importlib.resources).
PACKAGE_DATA = ["polymodal/reporting/templates/report.html.j2"]


def _run(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the 'build' package (dev extra) is not installed")
    out = tmp_path_factory.mktemp("dist")
    # Build from a copy of the sources: a build writes polymodal.egg-info next to the code it packages.
    src = tmp_path_factory.mktemp("src")
    tracked = _run("git", "ls-files", "-z", cwd=REPO_ROOT).stdout.split("\0")
    for rel in filter(None, tracked):
        if (REPO_ROOT / rel).is_file() and (rel.startswith("src/") or rel in ("pyproject.toml", "README.md")):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO_ROOT / rel).read_bytes())
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src)
    return out


def test_wheel_and_sdist_hold_the_package_and_its_data(dist):
    wheel = next(dist.glob("polymodal-*.whl"))
    sdist = next(dist.glob("polymodal-*.tar.gz"))
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(REPO_ROOT / "src").as_posix()
        for p in (REPO_ROOT / "src" / "polymodal").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, sorted(modules - names)[:10]
    assert set(PACKAGE_DATA) <= names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "polymodal = polymodal.cli:app" in entry_points
    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", *(f"src/{p}" for p in PACKAGE_DATA)} <= members


# about 16 s alone (70 s on 2 shared cores): in the default suite, so that every CI run installs the wheel
def test_wheel_installs_into_a_clean_venv_and_runs_the_demo(dist, tmp_path, tiny_config_file):
    wheel = next(dist.glob("polymodal-*.whl"))
    venv = tmp_path / "venv"
    # PYTHONPATH (this checkout's src/ in a test run) would make pip find polymodal installed and skip the wheel.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", env=env).stdout.strip())
    constraints = REPO_ROOT / "constraints.txt"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        py,
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        "-c",
        constraints,
        wheel,
        env=env,
    )
    # Only now the dependencies: before, pip would see this checkout's editable polymodal and skip the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")

    where = _run(py, "-c", "import polymodal; print(polymodal.__file__)", cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(site), f"polymodal imported from {where}, not from the wheel"

    polymodal = venv / "bin" / "polymodal"
    from polymodal.version import __version__

    assert _run(polymodal, "--version", cwd=tmp_path, env=env).stdout.strip() == f"polymodal {__version__}"
    out = tmp_path / "demo"
    demo = _run(
        polymodal, "demo", "--out", out, "--rows", "40", "--config", tiny_config_file, "--quiet", cwd=tmp_path, env=env
    )
    assert "demo: test metrics" in demo.stdout and (out / "run" / "manifest.json").is_file()


def test_version_option_prints_the_package_version(cli):
    from polymodal.version import __version__

    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"polymodal {__version__}"
