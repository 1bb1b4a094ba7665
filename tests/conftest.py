"""Shared fixtures. In CI (ZEEK_ML_NO_SKIP=1) a missing dependency fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def shared_data() -> Path:
    need(DATA.is_dir(), f"shared data not found at {DATA} (set ZEEK_ML_SHARED_DATA)")
    return DATA


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
    if os.environ.get("ZEEK_ML_NO_SKIP") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, and ZEEK_ML_NO_SKIP is set (CI): {report.longrepr}"
