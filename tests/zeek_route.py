"""Real captures through a real Zeek and zeek-ml, both ways a SOC receives zeek-ml's notices.

1. Zeek reads the captures and writes conn.log (TSV, or JSON with ``LogAscii::use_json=T``), with
   the ``community_id`` column of ``policy/protocols/conn/community-id-logging``.
2. ``zeek-ml watch`` (the CLI, as a subprocess) follows that log directory and writes its own
   notice log (``zeek_ml_notice.log``, in the sensor's format) and the verdict file.
3. Zeek, with the zeek-ml package loaded, follows the verdict file and raises the notices into
   its own notice.log (same format as the sensor's).

``python -m tests.zeek_route`` (with ``zeek`` on PATH) regenerates the fixtures in
``tests/data/zeek8/`` that the SOC tests read where there is no Zeek (CI);
``tests/test_zeek_package.py`` checks they are current.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PCAPS = (ROOT / "tests" / "data" / "pcaps" / "pop3.pcap", ROOT / "tests" / "data" / "pcaps" / "socks.trace")
FIXTURES = ROOT / "tests" / "data" / "zeek8"
PACKAGE = ROOT / "zeek_scripts" / "scripts"
SEEDS = FIXTURES / "random.seed"
"""Zeek's random seeds (``zeek --save-seeds``), so its connection uids are the same every run."""

RAISE_NOTICES = """
# Test harness: the package follows the verdict file (STREAM mode never ends), so stop once
# every verdict the file holds is a notice.
redef exit_only_after_terminate = T;
redef ZeekML::verdict_file = "{verdicts}";
redef LogAscii::use_json = {json};

global logged = 0;

event Notice::log_notice(rec: Notice::Info)
	{{
	if ( ++logged == {count} )
		terminate();
	}}

event give_up()
	{{
	terminate();
	}}

event zeek_init()
	{{
	schedule 120sec {{ give_up() }};
	}}
"""


def merge_pcaps(paths: tuple[Path, ...], out: Path) -> Path:
    """One classic pcap holding every packet of ``paths`` (same link type), in time order."""
    header = b""
    packets: list[tuple[float, int, bytes]] = []
    for n, path in enumerate(paths):
        data = path.read_bytes()
        if data[:4] != b"\xd4\xc3\xb2\xa1":
            raise ValueError(f"{path}: not a little-endian microsecond pcap")
        header = header or data[:24]
        if data[20:24] != header[20:24]:
            raise ValueError(f"{path}: another link type")
        pos = 24
        while pos + 16 <= len(data):
            sec, usec, incl, _ = struct.unpack("<IIII", data[pos : pos + 16])
            packets.append((sec + usec / 1e6, n, data[pos : pos + 16 + incl]))
            pos += 16 + incl
    packets.sort(key=lambda p: (p[0], p[1]))
    out.write_bytes(header + b"".join(p[2] for p in packets))
    return out


@dataclass
class Route:
    """What one run produced, every file real output of Zeek or zeek-ml."""

    conn: Path
    own_notices: Path
    verdicts: Path
    zeek_notices: Path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "zeek_ml", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def zeek(*args: str, cwd: Path) -> None:
    env = dict(os.environ, ZEEK_SEED_FILE=str(SEEDS))
    out = subprocess.run(["zeek", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"zeek {' '.join(args)} failed ({out.returncode}): {out.stderr or out.stdout}")


def run_route(work: Path, json_logs: bool) -> Route:
    """Captures -> Zeek conn.log -> zeek-ml watch (own notice log, verdict file) -> Zeek notice.log."""
    sensor, zeek_side = work / "logs", work / "zeek"
    sensor.mkdir(parents=True)
    zeek_side.mkdir()
    pcap = merge_pcaps(PCAPS, work / "capture.pcap")
    # community-id-logging: conn.log's community_id column, as Security Onion and most sensors log it
    community = "policy/protocols/conn/community-id-logging"
    zeek("-C", "-r", str(pcap), community, f"LogAscii::use_json={'T' if json_logs else 'F'}", cwd=sensor)
    own, verdicts = work / "zeek_ml_notice.log", work / "verdicts.log"
    res = cli("watch", str(sensor), "-o", str(own), "--verdicts", str(verdicts), "--exit-when-idle", "1", cwd=work)
    if res.returncode != 0:
        raise RuntimeError(f"zeek-ml watch failed: {res.stderr}")
    count = sum(1 for line in verdicts.read_text().splitlines() if line and not line.startswith("#"))
    script = zeek_side / "raise-notices.zeek"
    script.write_text(RAISE_NOTICES.format(verdicts=verdicts, json="T" if json_logs else "F", count=count))
    zeek("-b", str(PACKAGE), str(script), cwd=zeek_side)
    return Route(sensor / "conn.log", own, verdicts, zeek_side / "notice.log")


def fixture_name(kind: str, json_logs: bool) -> Path:
    return FIXTURES / f"{kind}.{'json' if json_logs else 'tsv'}.log"


def write_fixtures(work: Path) -> list[Path]:
    """Run both sensor formats and keep conn.log and Zeek's notice.log as test fixtures."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    written = []
    for json_logs in (False, True):
        route = run_route(work / ("json" if json_logs else "tsv"), json_logs)
        for kind, path in (("conn", route.conn), ("notice", route.zeek_notices)):
            target = fixture_name(kind, json_logs)
            shutil.copyfile(path, target)
            written.append(target)
    return written


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for path in write_fixtures(Path(tmp)):
            print(f"wrote {path}")
