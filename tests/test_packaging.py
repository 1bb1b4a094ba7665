"""The sdist a distributor gets: built with ``python -m build``, unpacked elsewhere, installed into a fresh
venv and into a ``pip install --user`` base, it runs the quick start and finds its model away from the source tree.

Dependencies come from this machine (``--system-site-packages``, ``--no-deps --no-build-isolation``):
the test needs no network. One sdist build and two installs: about 30-60 s.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ALLOWED_SKIP, ROOT

pytest.importorskip("build", reason="python -m build (the test extra) builds the sdist")


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail the test with its output if it fails."""
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what points Python at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZEEK_ML_MODEL", "VIRTUAL_ENV")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, built from this checkout and unpacked in a directory of its own."""
    out = tmp_path_factory.mktemp("dist")
    # one build at a time: setuptools assembles the sdist in the checkout, and two pytest-xdist workers
    # building at once took each other's files away
    lock = Path(tempfile.gettempdir()) / f"zeek-ml-sdist-{os.getuid()}.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", out, ROOT, cwd=ROOT)
    (archive,) = out.glob("zeek_ml-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out / "unpacked", filter="data")
    (tree,) = (out / "unpacked").iterdir()
    return tree


def test_metadata_a_distributor_accepts() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "BSD-3-Clause" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "zeek-ml developers" in text
    assert {"Homepage", "Source", "Issues"} <= set(meta["urls"])
    for classifier in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {classifier}" in meta["classifiers"]
    assert any(c.startswith("Development Status") for c in meta["classifiers"])
    assert any(c.startswith("Environment") for c in meta["classifiers"])


def test_sdist_holds_what_the_readme_points_to(sdist: Path) -> None:
    for path in ("LICENSE", "README.md", "zeek_scripts/zkg.meta", "bench/README.md", "models/conn-cnn-v2.onnx"):
        assert (sdist / path).is_file(), path
    assert len(list((sdist / "sample_logs").rglob("*.log"))) >= 8
    pkg_info = (sdist / "PKG-INFO").read_text()
    assert "License-Expression: BSD-3-Clause" in pkg_info and "Project-URL: Source" in pkg_info
    assert not list(sdist.rglob("__pycache__"))


def test_sdist_installs_in_a_venv_and_runs_the_quick_start(sdist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # no pip of its own: ensurepip's would bring an old setuptools that shadows this machine's
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path)
    python, zeek_ml = venv / "bin" / "python", venv / "bin" / "zeek-ml"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-build-isolation", sdist,
        cwd=tmp_path, env=clean_env())  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env()

    res = run(zeek_ml, "score", sdist / "sample_logs", "-o", "notice.log", cwd=elsewhere, env=env)
    assert "read 3,478 records from 8 file(s), rejected 0, scored 3,478" in res.stderr
    assert (elsewhere / "notice.log").read_text().startswith("#separator")

    probe = "import zeek_ml; m = zeek_ml.load_model(); print(zeek_ml.__file__); print(m.path)"
    package, model = run(python, "-c", probe, cwd=elsewhere, env=env).stdout.split()
    assert Path(package).is_relative_to(venv), package  # the installed copy, not the checkout
    assert Path(model) == venv / "share" / "zeek-ml" / "models" / "conn-cnn-v2.onnx"

    unit = run(zeek_ml, "watch", "--print-systemd-unit", cwd=elsewhere, env=env).stdout
    assert f"ExecStart={zeek_ml.resolve()} watch " in unit
    assert "--rotated-dir '/opt/zeek/logs/20*'" in unit


def test_sdist_installs_with_pip_user_and_finds_its_model(sdist: Path, tmp_path: Path) -> None:
    if sys.prefix != sys.base_prefix:
        # a clone tested in a venv (as the README's fresh-machine check does) cannot do this one
        pytest.skip(f"{ALLOWED_SKIP} pip refuses --user inside a virtual environment (run with a base interpreter)")
    base = tmp_path / "userbase"
    env = clean_env(PYTHONUSERBASE=str(base), PIP_BREAK_SYSTEM_PACKAGES="1")
    run(sys.executable, "-m", "pip", "install", "-q", "--user", "--no-deps", "--no-build-isolation", sdist,
        cwd=tmp_path, env=env)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = "import zeek_ml; m = zeek_ml.load_model(); print(zeek_ml.__file__); print(m.path)"
    package, model = run(sys.executable, "-c", probe, cwd=elsewhere, env=env).stdout.split()
    assert Path(package).is_relative_to(base), package
    shipped = Path(sys.prefix) / "share" / "zeek-ml" / "models" / "conn-cnn-v2.onnx"
    if not shipped.is_file():  # a prefix install would come first: then the user base is not what is found
        assert Path(model) == base / "share" / "zeek-ml" / "models" / "conn-cnn-v2.onnx"


def test_systemd_unit_runs_the_given_entry_point() -> None:
    from zeek_ml.services.watch.systemd import systemd_unit

    system = systemd_unit(["/usr/local/bin/zeek-ml"])
    assert "ExecStart=/usr/local/bin/zeek-ml watch /opt/zeek/logs/current" in system
    assert "ProtectHome=yes" in system and "@ZEEK_ML@" not in system
    pipx = systemd_unit(["/home/ids/.local/bin/zeek-ml"])  # ProtectHome=yes would hide it from the service
    assert "ExecStart=/home/ids/.local/bin/zeek-ml watch" in pipx and "ProtectHome=read-only" in pipx
    spaced = systemd_unit(["/opt/my tools/bin/python", "-m", "zeek_ml"])
    assert 'ExecStart="/opt/my tools/bin/python" -m zeek_ml watch' in spaced
