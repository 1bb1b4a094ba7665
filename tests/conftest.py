"""Shared fixtures. In CI (ZEEK_ML_NO_SKIP=1) a missing dependency fails instead of skipping.

Two things a fresh clone may lack are not dependencies the test command installs, so a test
that needs one skips with a reason saying what and why, even with ZEEK_ML_NO_SKIP:

- the shared data in ``../shared/data`` (:func:`need_shared`): with ``CI=true`` its absence is a
  failure, since CI always has it;
- a real Zeek on ``PATH`` (:func:`need_zeek`): zeek-ml's Zeek package, Broker peering and Zeek's
  own logs are tested against it where it is installed; ``ZEEK_ML_REQUIRE_ZEEK=1`` makes its
  absence a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("ZEEK_ML_SHARED_DATA", ROOT.parent / "shared" / "data"))
TEST_DATA = Path(__file__).resolve().parent / "data"
SAMPLE_LOGS = ROOT / "sample_logs"


def need(condition: bool, reason: str) -> None:
    """Skip when a dependency is missing, or fail when ZEEK_ML_NO_SKIP is set (CI)."""
    if condition:
        return
    if os.environ.get("ZEEK_ML_NO_SKIP"):
        pytest.fail(f"dependency missing (ZEEK_ML_NO_SKIP is set): {reason}")
    pytest.skip(reason)


ALLOWED_SKIP = "[not in this checkout]"
"""Marks the skip reasons ZEEK_ML_NO_SKIP lets through (see the module docstring)."""


def need_shared(path: Path | None = None) -> Path:
    """``../shared/data`` (or ``path`` inside it): skip without it, fail with ``CI=true``."""
    target = path if path is not None else DATA
    if target.exists():
        return target
    reason = f"shared data not found at {target} (a clone without ../shared; set ZEEK_ML_SHARED_DATA)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, where it must be present")
    pytest.skip(f"{ALLOWED_SKIP} {reason}")


def need_zeek() -> str:
    """The ``zeek`` binary on PATH: skip without it (fail with ``ZEEK_ML_REQUIRE_ZEEK=1``)."""
    found = shutil.which("zeek")
    if found:
        return found
    reason = "zeek not on PATH: the Zeek-backed tests need a Zeek 6.0+ (8.0 LTS tested) with zeek-cut"
    if os.environ.get("ZEEK_ML_REQUIRE_ZEEK"):
        pytest.fail(f"{reason}; ZEEK_ML_REQUIRE_ZEEK is set")
    pytest.skip(f"{ALLOWED_SKIP} {reason}")


@pytest.fixture
def shared_data() -> Path:
    return need_shared()


@pytest.fixture
def zeek() -> str:
    return need_zeek()


@pytest.fixture(scope="module")
def broker() -> Any:
    """Broker's Python bindings (as ``zeek-ml broker`` finds them): skip without them, fail in CI."""
    from zeek_ml.services.broker.bindings import BrokerUnavailable, import_broker

    try:
        return import_broker()
    except BrokerUnavailable as e:
        need(False, str(e))


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``zeek-ml`` as a real subprocess (``python -m zeek_ml``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "zeek_ml", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """With ZEEK_ML_NO_SKIP set (CI), every skip, importorskip included, is a failure."""
    outcome = yield
    report = outcome.get_result()
    allowed = ALLOWED_SKIP in str(report.longrepr)
    if os.environ.get("ZEEK_ML_NO_SKIP") and report.skipped and not hasattr(report, "wasxfail") and not allowed:
        report.outcome = "failed"
        report.longrepr = f"skipped, and ZEEK_ML_NO_SKIP is set (CI): {report.longrepr}"
