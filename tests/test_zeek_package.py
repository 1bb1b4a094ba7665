"""The Zeek package against a real Zeek (skipped where ``zeek`` is not on PATH, with the reason).

- ``zkg install`` of the package as the README says (a git repository of ``zeek_scripts/``), which
  runs its btests with that Zeek, then Zeek loading what zkg installed.
- The whole Zeek route on real captures (``tests/zeek_route.py``): Zeek's conn.log, ``zeek-ml
  watch --verdicts``, the package raising the notices into Zeek's notice.log; the fixtures the
  SOC tests read (``tests/data/zeek8``) must be what this run writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, need
from tests.zeek_route import fixture_name, run_route

PACKAGE = ROOT / "zeek_scripts"


def _git(*args: str, cwd: Path) -> None:
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env = dict(os.environ, **who)
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def test_zkg_installs_the_package_and_its_btests_pass(zeek: str, tmp_path: Path) -> None:
    zkg = shutil.which("zkg")
    need(zkg is not None, "zkg not on PATH (it ships with Zeek: <prefix>/bin/zkg)")
    repo = tmp_path / "zeek-ml-pkg"
    shutil.copytree(PACKAGE, repo, ignore=shutil.ignore_patterns(".tmp", ".btest.failed.dat"))
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "zeek-ml", cwd=repo)
    config = tmp_path / "zkg.cfg"
    state = tmp_path / "zkg"
    config.write_text(
        f"[sources]\n[paths]\nstate_dir = {state}\nscript_dir = {state}/site\n"
        f"plugin_dir = {state}/plugins\nbin_dir = {state}/bin\n"
    )
    # `zkg install` runs the package's test_command (its btests) with this Zeek first, and refuses
    # to install when one fails.
    out = subprocess.run(
        [zkg, "--configfile", str(config), "install", "--force", str(repo)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Running unit tests" in out.stdout and f'Installed "{repo}"' in out.stdout
    loader = state / "site" / "packages"
    assert (loader / "zeek-ml-pkg" / "__load__.zeek").is_file()
    check = subprocess.run(
        [zeek, "-b", str(loader), "-e", "event zeek_init() { print ZeekML::verdict_topic, ZeekML::suppress_for; }"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "zeek/ml/verdict, 1.0 hr"


def _body(path: Path) -> list[str]:
    """A log's lines less the #open/#close stamps (the time the test ran)."""
    return [ln for ln in path.read_text().splitlines() if not ln.startswith(("#open", "#close"))]


@pytest.mark.parametrize("json_logs", [False, True], ids=["tsv", "json"])
def test_zeek_raises_zeek_mls_notices_and_the_fixtures_are_current(zeek: str, tmp_path: Path, json_logs: bool) -> None:
    route = run_route(tmp_path, json_logs)
    notices = _body(route.zeek_notices)
    assert sum(1 for ln in notices if "ZeekML::Suspicious_Connection" in ln) == 2
    for kind, path in (("conn", route.conn), ("notice", route.zeek_notices)):
        assert _body(path) == _body(fixture_name(kind, json_logs)), f"run: python -m tests.zeek_route ({kind})"
    # zeek-ml's own notice log of the same run holds the same two notices (tests/test_soc_routes.py
    # compares them field by field on the fixtures).
    own = [ln for ln in route.own_notices.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(own) == 2
