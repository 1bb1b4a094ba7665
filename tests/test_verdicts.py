"""The verdict file: one format, written by ``zeek-ml watch --verdicts``, read by the Zeek package.

Run ``python -m tests.test_verdicts`` to regenerate the package's canned
verdict file (``zeek_scripts/testing/Files/verdicts.log``); a test below fails
when it is out of date.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, run_cli
from zeek_ml.formats.escape import unescape
from zeek_ml.formats.records import NOTICE_COLUMNS, VERDICT_FIELDS, log_type, verdict_file_fields
from zeek_ml.sinks.verdict_file import verdict_file_header, verdict_file_sink

CANNED = ROOT / "zeek_scripts" / "testing" / "Files" / "verdicts.log"
MALICIOUS = "001-zeek-scenario-malicious.labeled-conn.log.gz"
CANNED_SOURCES = (
    ("ctu-normal-40.first2000.conn.log.labeled.gz", 1),
    (MALICIOUS, 2),
)
"""Real logs and how many originators of each: the first flagged connection of each of the first ``n``
originators the model flags goes into the canned file (three originators in all). Each log is scored
whole and in log order (the model is stateful)."""

PORT = re.compile(r"^\d+/(tcp|udp|icmp|unknown)$")


def read_verdict_file(path: Path) -> tuple[dict[str, str], pd.DataFrame]:
    """Parse a verdict file the way Zeek's ASCII reader does: header lines, then tab-separated fields."""
    meta: dict[str, str] = {}
    rows: list[list[str]] = []
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        if line.startswith("#separator"):
            meta["separator"] = line.split(" ", 1)[1]
        elif line.startswith("#"):
            key, _, value = line[1:].partition("\t")
            meta[key] = value
        else:
            rows.append(line.split("\t"))
    names = meta["fields"].split("\t")
    assert all(len(r) == len(names) for r in rows), "a line with the wrong number of fields"
    return meta, pd.DataFrame(rows, columns=names)


def test_header_is_the_verdict_record() -> None:
    meta_lines = verdict_file_header(0).decode().splitlines()
    fields = next(ln for ln in meta_lines if ln.startswith("#fields")).split("\t")[1:]
    types = next(ln for ln in meta_lines if ln.startswith("#types")).split("\t")[1:]
    assert fields == [f.name for f in VERDICT_FIELDS]
    assert types == [log_type(f.zeek_type) for f in VERDICT_FIELDS]
    assert list(zip(fields, types)) == verdict_file_fields()
    assert meta_lines[0] == "#separator \\x09" and "#path\tzeek_ml_verdicts" in meta_lines


def test_notice_columns_match_the_offline_notice_log() -> None:
    """Zeek logs ``Notice::Info$zeek_ml`` as exactly the columns zeek-ml's own notice log has after Zeek's 26."""
    from zeek_ml.notices.notice import EXTRA_NOTICE_FIELDS, INCIDENT_NOTICE_FIELDS

    assert list(NOTICE_COLUMNS) == list(EXTRA_NOTICE_FIELDS + INCIDENT_NOTICE_FIELDS)


@pytest.mark.parametrize("aggregate", [True, False], ids=["incidents", "per-connection"])
def test_watch_writes_the_verdict_file_beside_the_notice_log(tmp_path: Path, aggregate: bool) -> None:
    """The verdict file holds the notices of zeek-ml's own log, so both routes into a SOC agree."""
    live = tmp_path / "current"
    live.mkdir()
    with gzip.open(SAMPLE_LOGS / MALICIOUS, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    body = [ln for ln in lines if not ln.startswith(b"#")]
    (live / "conn.log").write_bytes(b"".join(header + body[:500]))
    verdicts, notices = tmp_path / "verdicts.log", tmp_path / "notice.log"
    args = ["watch", str(live), "-o", str(notices), "--verdicts", str(verdicts), "--exit-when-idle", "0.5", "--poll"]
    if not aggregate:
        args.append("--no-aggregate")
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    # A second run over more lines appends: one header, no line twice.
    with open(live / "conn.log", "ab") as f:
        f.write(b"".join(body[500:]))
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    text = verdicts.read_text()
    assert text.count("#fields") == 1 and "#close" not in text
    meta, rows = read_verdict_file(verdicts)
    assert meta["fields"].split("\t") == [f.name for f in VERDICT_FIELDS]
    _, noticed = read_verdict_file(notices)  # the notice log is Zeek TSV as well
    assert len(rows) == len(noticed) > (0 if aggregate else 100)
    assert list(rows["uid"]) == list(noticed["uid"]) and list(rows["msg"]) == list(noticed["msg"])
    assert list(rows["sub"]) == list(noticed["sub"])
    for name, _ in NOTICE_COLUMNS:
        assert list(rows[name.removeprefix("zeek_ml.")]) == list(noticed[name]), name
    assert list(rows["orig_p"]) == [f"{p}/{t}" for p, t in zip(noticed["id.orig_p"], noticed["proto"])]
    assert rows["resp_p"].str.match(PORT).all()
    assert (rows["score"].astype(float) >= rows["threshold"].astype(float)).all()
    if aggregate:
        assert list(rows["n"]) == list(noticed["n"]) and rows["n"].astype(int).sum() > 100
    else:
        assert set(rows["n"]) == {"1"} and rows["uid"].is_unique
        # Exactly the connections the model flags, in log order, as offline scoring computes them
        # (less link-local discovery chatter, which notices leave out by default).
        from zeek_ml.cli import _load
        from zeek_ml.model.scorer import Scorer
        from zeek_ml.notices.site import local_discovery
        from zeek_ml.sinks.verdict_file import verdict_rows
        from zeek_ml.sources.files import iter_batches

        frame = pd.concat(list(iter_batches([str(live / "conn.log")])), ignore_index=True)
        offline = Scorer(_load(None))(frame)
        expected = verdict_rows(offline.take(offline.flagged & ~local_discovery(frame)))
        assert list(rows["uid"]) == list(expected["uid"])
        assert np.allclose(rows["score"].astype(float), expected["score"], atol=1e-6)
        assert list(rows["msg"].map(unescape)) == list(expected["msg"])
        assert list(rows["severity"]) == list(expected["severity"])


def canned_verdicts() -> bytes:
    """The canned verdict file's lines (no header): real connections, scored by the shipped model."""
    from zeek_ml.cli import _load
    from zeek_ml.model.scorer import Scorer
    from zeek_ml.sources.files import iter_batches

    model = _load(None)
    out = io.BytesIO()
    sink = verdict_file_sink(out, aggregate=False, local_discovery=True)
    for name, n in CANNED_SOURCES:
        frame = pd.concat(list(iter_batches([str(SAMPLE_LOGS / name)])), ignore_index=True)
        verdicts = Scorer(model)(frame)
        flagged = np.flatnonzero(verdicts.flagged)
        first = frame.iloc[flagged].groupby("id.orig_h", sort=False).head(1).index[:n]
        assert len(first) == n, name
        mask = np.zeros(len(frame), bool)
        mask[first] = True
        sink.write(verdicts.take(mask))
    return out.getvalue()


def _without_open(data: bytes) -> bytes:
    return b"".join(ln for ln in data.splitlines(keepends=True) if not ln.startswith(b"#open"))


def test_canned_verdict_file_for_btest_is_current() -> None:
    expected = verdict_file_header(0) + canned_verdicts()
    assert _without_open(CANNED.read_bytes()) == _without_open(expected), "run: python -m tests.test_verdicts"
    _, rows = read_verdict_file(CANNED)
    assert rows["orig_h"].nunique() == len(rows) == 3


def test_sink_on_a_path_writes_the_header_once(tmp_path: Path) -> None:
    path = tmp_path / "v.log"
    shutil.copy(CANNED, path)
    before = path.read_bytes()
    sink = verdict_file_sink(path)
    sink.close()
    assert path.read_bytes() == before
    fresh = tmp_path / "fresh.log"
    verdict_file_sink(fresh).close()
    assert fresh.read_bytes().count(b"#fields") == 1


@pytest.mark.parametrize("value", ["tab\there", "-", "(empty)", "back\\slash"])
def test_messages_are_escaped_as_zeek_reads_them(tmp_path: Path, value: str) -> None:
    from zeek_ml.formats.schema import CONN_FIELDS, pandas_dtype
    from zeek_ml.model.scorer import Verdicts

    conns = pd.DataFrame({n: pd.Series([None], dtype=pandas_dtype(t)) for n, t in CONN_FIELDS})
    conns["ts"] = [1.0]
    conns["uid"] = pd.Series(["CAbc"], dtype=pandas_dtype("string"))
    conns["id.orig_h"] = pd.Series(["10.0.0.1"], dtype=pandas_dtype("addr"))
    conns["id.resp_h"] = pd.Series(["10.0.0.2"], dtype=pandas_dtype("addr"))
    conns["id.orig_p"] = pd.Series([1234], dtype=pandas_dtype("port"))
    conns["id.resp_p"] = pd.Series([80], dtype=pandas_dtype("port"))
    conns["proto"] = pd.Series(["tcp"], dtype=pandas_dtype("enum"))
    conns["history"] = pd.Series([value], dtype=pandas_dtype("string"))
    v = Verdicts(conns, np.array([0.99], np.float32), 0.5, "m", "1", family=np.array([value], dtype=object))
    path = tmp_path / "v.log"
    sink = verdict_file_sink(path, aggregate=False)
    sink.write(v)
    sink.close()
    _, rows = read_verdict_file(path)
    assert unescape(rows.loc[0, "family"]) == value
    assert f"history {value})" in unescape(rows.loc[0, "msg"])
    assert rows.loc[0, "orig_p"] == "1234/tcp" and rows.loc[0, "reasons"] == "-"


if __name__ == "__main__":
    CANNED.parent.mkdir(parents=True, exist_ok=True)
    CANNED.write_bytes(verdict_file_header() + canned_verdicts())
    print(f"wrote {CANNED}")
