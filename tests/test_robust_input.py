"""Bad input is never fatal and never a traceback (issue 17, item 2), and ``-`` reads stdin.

Three layers, all on real Zeek and Suricata lines (``sample_logs/``, ``tests/data/``):

- **One test per fault case** of the issue, each checked on one ``zeek-ml score`` run (a real
  subprocess) over a folder of small files, one file per case: a BOM before ``#separator``,
  bytes that are not UTF-8, a bare ``\\r``, odd numeric spellings (``7.0``, ``+7``, ``1e3``,
  hex, ``1_000``), JSON values of the wrong type or out of range, a lone surrogate, a corrupt
  and a truncated gzip, a 1 MiB value, a line with no end; stdin from ``zcat``, ``zeek-cut``
  and a Kafka-consumer-like pipe.
- **A fuzz corpus**: real lines mutated at random (:func:`fuzz_corpus`), every line tagged with
  a unique uid and what must become of it: a valid line's uid reaches ``--all``; an invalid
  one is rejected with file, line and the field at fault; a randomly damaged one is one or the
  other, never both, never neither. The CLI runs on it (plain, gzip, a truncated gzip, stdin)
  and must exit 0 without a traceback: 6,975 fuzzed lines in CI;
  ``python -m tests.test_robust_input --lines 1000000`` runs a large campaign and prints how
  many lines it ran.
- **Property tests** (hypothesis) over TSV and JSON lines built from values of every kind,
  valid or not, in-process through the reader: no exception escapes, every valid line is read
  with its values, every invalid line is rejected naming one of its invalid fields.
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SAMPLE_LOGS, TEST_DATA, run_cli

# --------------------------------------------------------------------------- real seed lines

TSV_SEEDS = [
    SAMPLE_LOGS / "zat.conn.log",
    SAMPLE_LOGS / "ssh_sshguess.conn.log",
    SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log",
    SAMPLE_LOGS / "rotated" / "conn.2015-03-30-14-45-02.log",
    SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz",
    SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz",
    TEST_DATA / "zeek8" / "conn.tsv.log",
]
JSON_SEEDS = [
    SAMPLE_LOGS / "zat.conn.json.log",
    SAMPLE_LOGS / "ssh_sshguess.conn.json.log",
    SAMPLE_LOGS / "http_bro.org.conn.iso8601.json.log",
    TEST_DATA / "zeek8" / "conn.json.log",
]
EVE_SEED = TEST_DATA / "suricata-excerpt.eve.json"


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@dataclass
class TsvSeed:
    """A real TSV conn log split into its header block and data lines, with its column types."""

    name: str
    header: list[bytes]
    fields: list[str]
    types: list[str]
    rows: list[list[bytes]]

    @classmethod
    def load(cls, path: Path) -> TsvSeed:
        header: list[bytes] = []
        rows: list[list[bytes]] = []
        fields: list[str] = []
        types: list[str] = []
        for line in _read(path).split(b"\n"):
            line = line.rstrip(b"\r")
            if line.startswith(b"#"):
                if line.startswith(b"#close"):
                    continue
                if not rows:
                    header.append(line)
                if line.startswith(b"#fields"):
                    fields = line.decode().split("\t")[1:]
                elif line.startswith(b"#types"):
                    types = line.decode().split("\t")[1:]
            elif line:
                rows.append(line.split(b"\t"))
        assert fields and len(types) == len(fields), path
        rows = [r for r in rows if len(r) == len(fields)]
        return cls(path.name, header, fields, types, rows)


def _json_seeds() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for path in JSON_SEEDS:
        rows = [json.loads(line) for line in _read(path).splitlines() if line.strip()]
        out.append((path.name, rows))
    return out


def _eve_seed() -> list[dict[str, Any]]:
    events = [json.loads(line) for line in EVE_SEED.read_bytes().splitlines() if line.strip()]
    return [e for e in events if e.get("event_type") == "flow"]


# --------------------------------------------------------------------------- the fuzz corpus

VALID, INVALID, EITHER = "valid", "invalid", "either"

SCALE = int(os.environ.get("ZEEK_ML_FUZZ_SCALE", "1"))
"""Multiplies the property tests' examples (CI: 1; a local campaign: 20 or more)."""

BAD_COUNTS = [
    "7.0",
    "+7",
    "1e3",
    "0x1f",
    "0X1F",
    " 0x10",
    "1_000",
    "-1",
    "9223372036854775808",
    "18446744073709551616",
    "",
    "abc",
    "\u0667",
    "7 7",
    "0x",
    "1.5",
    "nan",
    "inf",
]
BAD_PORTS = ["65536", "-1", "70000", "1e3", "0x50", "80.0", "+80"]
BAD_TIMES = ["nan", "inf", "-inf", "1e400", "-5", "0x1p3", "0x1.8p30", "1_0.5", "", "abc", "253402300800", "1.5.5"]
BAD_INTERVALS = ["nan", "inf", "-1.5", "0x1p3", "1_0", "abc", "1e400"]
BAD_BOOLS = ["true", "yes", "TRUE", "t", " T", "2"]
BAD_ADDRS = ["999.1.1.1", "1.2.3", "10.0.0.01", "abc", "::g", "1.2.3.4.5", "10.0.\xff.1", "1.2.3.4 "]


@dataclass
class Line:
    """One fuzzed line: its number in its file, its uid, and what must become of it."""

    number: int
    uid: str | None
    expect: str
    field: str | None = None  # for INVALID: the field the reject must name (None: the line as a whole)
    mutation: str = ""
    raw: bytes = b""
    history_len: int | None = None  # for a valid long history: the length it must be cut to


@dataclass
class FuzzFile:
    name: str
    data: bytes
    lines: list[Line] = field(default_factory=list)
    gz: bool = False
    readable: int | None = None  # for a truncated gzip: how many lines decompress whole


def _rand_bytes(rng: random.Random, n: int, avoid: bytes = b"\t\n") -> bytes:
    out = bytearray()
    while len(out) < n:
        b = rng.choice(
            [rng.randrange(256), rng.choice(b"\xff\xfe\xc3\x80\xed\xa0\r\\x,-#( )\x00\x7f"), rng.choice(b"ShADadFfRr")]
        )
        if b not in avoid:
            out.append(b)
    return bytes(out)


def _tsv_file(rng: random.Random, seed: TsvSeed, tag: str, n: int, p_mutate: float) -> FuzzFile:
    """A TSV conn log of ``n`` real lines of ``seed`` (unique uids), most of them mutated."""
    col = {name: i for i, name in enumerate(seed.fields)}
    kinds = {name: t for name, t in zip(seed.fields, seed.types)}
    counts = [n for n, t in kinds.items() if t == "count"]
    ports = [n for n, t in kinds.items() if t == "port"]
    addrs = [n for n, t in kinds.items() if t == "addr"]
    bools = [n for n, t in kinds.items() if t == "bool"]
    texts = [n for n in ("history", "service", "conn_state", "proto") if n in col]
    others = [n for n in seed.fields if n != "uid"]
    bom = rng.random() < 0.1
    body: list[bytes] = []
    lines: list[Line] = []
    number = len(seed.header)
    for i in range(n):
        number += 1
        row = list(rng.choice(seed.rows))
        uid = f"F{tag}x{i}"
        row[col["uid"]] = uid.encode()
        line = Line(number, uid, VALID)
        end = b"\n"
        if rng.random() < p_mutate:
            kind = rng.randrange(14)
            if kind == 0:  # bytes that are not UTF-8 (and a bare CR) in a text field: kept, as Zeek escapes them
                name = rng.choice(texts)
                row[col[name]] = _rand_bytes(rng, rng.randrange(1, 12))
                line.mutation = f"bytes in {name}"
                if row[col[name]] in (b"-", b"(empty)"):
                    row[col[name]] = b"x" + row[col[name]]
            elif kind == 1 and "history" in col:  # a long history: kept, cut to the cap
                length = rng.choice([5000, 70_000, 300_000])
                row[col["history"]] = (b"ShADadFf" * (length // 8 + 1))[:length]
                line.mutation, line.history_len = f"history of {length}", 4096
            elif kind == 2:  # CRLF line end
                end = b"\r\n"
                line.mutation = "CRLF"
            elif kind == 3:  # unset value
                name = rng.choice(others)
                row[col[name]] = b"-"
                line.mutation = f"{name} unset"
            elif kind == 4:  # odd but valid numbers
                name = rng.choice(counts)
                row[col[name]] = rng.choice([b"0", b"007", b"9223372036854775807", b"123456789012"])
                line.mutation = f"{name} edge"
            elif kind == 5:
                name = rng.choice(counts)
                row[col[name]] = rng.choice(BAD_COUNTS).encode()
                line.expect, line.field, line.mutation = INVALID, name, f"{name}={row[col[name]]!r}"
            elif kind == 6:
                name = rng.choice(ports)
                row[col[name]] = rng.choice(BAD_PORTS).encode()
                line.expect, line.field, line.mutation = INVALID, name, f"{name}={row[col[name]]!r}"
            elif kind == 7:
                row[col["ts"]] = rng.choice(BAD_TIMES).encode()
                line.expect, line.field, line.mutation = INVALID, "ts", f"ts={row[col['ts']]!r}"
            elif kind == 8 and "duration" in col:
                row[col["duration"]] = rng.choice(BAD_INTERVALS).encode()
                line.expect, line.field, line.mutation = INVALID, "duration", f"duration={row[col['duration']]!r}"
            elif kind == 9 and bools:
                name = rng.choice(bools)
                row[col[name]] = rng.choice(BAD_BOOLS).encode()
                line.expect, line.field, line.mutation = INVALID, name, f"{name}={row[col[name]]!r}"
            elif kind == 10:
                name = rng.choice(addrs)
                row[col[name]] = rng.choice(BAD_ADDRS).encode("latin-1")
                line.expect, line.field, line.mutation = INVALID, name, f"{name}={row[col[name]]!r}"
            elif kind == 11:  # a field too many or too few
                j = rng.randrange(len(row))
                if rng.random() < 0.5:
                    del row[j]
                else:
                    row.insert(j, b"x")
                line.expect, line.mutation = INVALID, "field count"
                if j <= col["uid"]:
                    line.uid = None  # the uid moved: it cannot be looked for
            else:  # random damage to one field (never the uid): either outcome, never both
                name = rng.choice(others)
                value = bytearray(row[col[name]])
                for _ in range(rng.randrange(1, 4)):
                    op = rng.randrange(3)
                    pos = rng.randrange(len(value) + 1)
                    if op == 0:
                        value[pos:pos] = _rand_bytes(rng, 1, avoid=b"\n")
                    elif op == 1 and value:
                        del value[min(pos, len(value) - 1)]
                    elif value:
                        value[min(pos, len(value) - 1)] = _rand_bytes(rng, 1, avoid=b"\n")[0]
                row[col[name]] = bytes(value)
                line.expect, line.mutation = EITHER, f"random {name}"
                if b"\t" in value:
                    line.expect = INVALID  # a field count that no longer matches
        raw = b"\t".join(row)
        if raw.startswith(b"#"):  # a line starting with '#' is a header line by the format (Zeek writes \x23)
            raw = b"x" + raw
        line.raw = raw
        body.append(raw + end)
        lines.append(line)
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(seed.header) + b"\n" + b"".join(body)
    return FuzzFile(f"tsv-{tag}.conn.log", data, lines)


BAD_JSON_VALUES: dict[str, list[Any]] = {
    "count": [7.0, "7", True, -1, 2**63, 2**64, [1], {"a": 1}, 1e400],
    "port": [70000, -1, "80", 80.0, False],
    "time": [True, "garbage", float("nan"), 1e400, -5, 10**30, [1], {"t": 1}, "2024-13-45T00:00:00Z"],
    "interval": ["1.5", -1, 1e400, float("nan"), True, [0.5]],
    "bool": ["T", 1, 0, "true", [True]],
    "string": [5, ["a"], {"a": 1}, True, 1.5],
    "addr": [167772161, "999.1.1.1", ["10.0.0.1"], "abc", "10.0.0.1/24"],
    "set[string]": ["a", [1], [None], [["a"]], {"a": 1}],
}


def _json_text(obj: dict[str, Any], rng: random.Random) -> bytes:
    text = json.dumps(obj, allow_nan=True, separators=(",", ":") if rng.random() < 0.8 else (", ", ": "))
    return text.encode("utf-8", "surrogatepass")


def _json_file(rng: random.Random, seed: tuple[str, list[dict[str, Any]]], tag: str, n: int, p: float) -> FuzzFile:
    """A Zeek JSON conn log of ``n`` real records (unique uids), most of them mutated."""
    from zeek_ml.formats.schema import CONN_TYPES

    _, records = seed
    lines: list[Line] = []
    body: list[bytes] = []
    bom = rng.random() < 0.1
    for i in range(n):
        obj = dict(rng.choice(records))
        uid = f"J{tag}x{i}"
        obj["uid"] = uid
        line = Line(i + 1, uid, VALID)
        raw: bytes | None = None
        if rng.random() < p:
            kind = rng.randrange(12)
            keys = [k for k in obj if k != "uid"]
            if kind == 0:  # bytes that are not UTF-8 inside a string: kept, as Zeek escapes them
                obj["history"] = "Sh\x00AD"
                raw = _json_text(obj, rng).replace(b"\\u0000", _rand_bytes(rng, 3, avoid=b'\t\n"\\'))
                line.mutation = "raw bytes in history"
            elif kind == 1:  # a long history
                length = rng.choice([5000, 80_000])
                obj["history"] = ("ShADadFf" * (length // 8 + 1))[:length]
                line.mutation, line.history_len = f"history of {length}", 4096
            elif kind == 2 and keys:  # an optional field left out
                del obj[rng.choice(keys)]
                line.mutation = "field dropped"
            elif kind == 3:  # unicode: escapes, a surrogate pair, key order
                obj["service"] = rng.choice(["http\u00e9", "\U0001f600", "a\u2028b", "tab\tin"])
                obj = dict(rng.sample(list(obj.items()), len(obj)))
                line.mutation = "unicode, reordered"
            elif kind == 4:  # a column zeek-ml does not know: passed through whatever it holds
                obj["x_extra"] = rng.choice([2**70, {"a": [1, {"b": None}]}, [1, "a"], -3, "v", 1.5, None])
                line.mutation = "unknown column"
            elif kind in (5, 6, 7):  # a known field with a value its type cannot hold
                name = rng.choice([k for k in CONN_TYPES if k != "uid"])
                ztype = CONN_TYPES[name]
                pool = BAD_JSON_VALUES.get(ztype) or BAD_JSON_VALUES.get("string")
                if ztype == "enum":
                    pool = BAD_JSON_VALUES["string"]
                assert pool is not None
                obj[name] = rng.choice(pool)
                line.expect, line.field, line.mutation = INVALID, name, f"{name}={obj[name]!r}"
            elif kind == 8:  # a lone surrogate
                obj["history"] = "S\ud800h"
                line.expect, line.field, line.mutation = INVALID, "history", "lone surrogate"
            elif kind == 9:  # not JSON, or not an object
                text = _json_text(obj, rng)
                raw = rng.choice(
                    [
                        text[: len(text) // 2],
                        text + b"}",
                        b"[" + text + b"]",
                        b"null",
                        text.replace(b'":', b'"', 1),
                        b"{" * 5000 + b"}" * 5000,
                    ]
                )
                line.expect, line.mutation = INVALID, "not a JSON object"
            elif kind == 10:  # ts in the other forms Zeek writes
                ts = obj.get("ts")
                if isinstance(ts, (int, float)):
                    obj["ts"] = rng.choice([int(ts * 1000), _iso(ts)])
                line.mutation = "ts form"
            else:  # random damage to the text: either outcome, never both
                text = bytearray(_json_text(obj, rng))
                start = text.find(b'"uid"') + len(uid) + 10
                for _ in range(rng.randrange(1, 4)):
                    pos = rng.randrange(start, len(text) + 1) if start < len(text) else len(text)
                    text[pos:pos] = _rand_bytes(rng, 1, avoid=b"\n")
                raw = bytes(text)
                line.expect, line.mutation = EITHER, "random bytes"
        if raw is None:
            raw = _json_text(obj, rng)
        if rng.random() < 0.02:
            raw = raw + b"\r"
        line.raw = raw
        body.append(raw + b"\n")
        lines.append(line)
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(body)
    return FuzzFile(f"json-{tag}.conn.json.log", data, lines)


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BAD_EVE: list[tuple[tuple[str, ...], Any, str]] = [
    (("flow", "bytes_toserver"), 2**63, "flow.bytes_toserver"),
    (("flow", "bytes_toserver"), -1, "flow.bytes_toserver"),
    (("flow", "pkts_toclient"), "5", "flow.pkts_toclient"),
    (("flow", "pkts_toclient"), 2**53, "flow.pkts_toclient"),
    (("src_port",), 70000, "src_port"),
    (("dest_port",), "80", "dest_port"),
    (("src_ip",), 167772161, "src_ip"),
    (("dest_ip",), "999.0.0.1", "dest_ip"),
    (("proto",), ["TCP"], "proto"),
    (("flow", "start"), 12345, "flow.start"),
    (("flow", "start"), "yesterday", "flow.start"),
    (("flow",), "none", "flow"),
    (("app_proto",), "h\ud800", "app_proto"),
]


def _eve_file(rng: random.Random, flows: list[dict[str, Any]], tag: str, n: int, p: float) -> FuzzFile:
    """Suricata eve.json of ``n`` real flow events (unique flow ids), most of them mutated."""
    lines: list[Line] = []
    body: list[bytes] = []
    for i in range(n):
        obj = json.loads(json.dumps(rng.choice(flows)))
        flow_id = 10**12 + int(tag) * 100_000 + i if tag.isdigit() else 10**12 + i
        obj["flow_id"] = flow_id
        line = Line(i + 1, str(flow_id), VALID)
        raw = None
        if rng.random() < p:
            kind = rng.randrange(6)
            if kind == 0:  # bytes that are not UTF-8 in a string: kept
                obj["app_proto"] = "h\x00"
                raw = json.dumps(obj).encode().replace(b"\\u0000", b"\xff\xfe")
                line.mutation = "raw bytes"
            elif kind in (1, 2, 3):
                path, value, name = rng.choice(BAD_EVE)
                target = obj
                for key in path[:-1]:
                    target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else target
                target[path[-1]] = value
                line.expect, line.field, line.mutation = INVALID, name, f"{name}={value!r}"
            elif kind == 4:
                text = json.dumps(obj).encode()
                raw = text[: rng.randrange(10, len(text) - 1)]
                line.expect, line.mutation = INVALID, "cut short"
            else:  # a long string value: kept, cut
                obj["app_proto"] = "x" * 50_000
                line.mutation = "long app_proto"
        if raw is None:
            raw = json.dumps(obj).encode("utf-8", "surrogatepass")
        line.raw = raw
        body.append(raw + b"\n")
        lines.append(line)
    return FuzzFile(f"eve-{tag}.eve.json", b"".join(body), lines)


def fuzz_corpus(seed: int, lines_per_file: int = 400, files: int = 6, p_mutate: float = 0.6) -> list[FuzzFile]:
    """A reproducible corpus: TSV, JSON and eve files of mutated real lines."""
    rng = random.Random(seed)
    tsv = [TsvSeed.load(p) for p in TSV_SEEDS]
    js = _json_seeds()
    eve = _eve_seed()
    out = []
    for k in range(files):
        tag = f"{seed}{k:03d}"
        which = k % 3
        if which == 0:
            out.append(_tsv_file(rng, rng.choice(tsv), tag, lines_per_file, p_mutate))
        elif which == 1:
            out.append(_json_file(rng, rng.choice(js), tag, lines_per_file, p_mutate))
        else:
            out.append(_eve_file(rng, eve, tag, max(lines_per_file // 4, 20), p_mutate))
    return out


def gzip_variants(rng: random.Random, files: list[FuzzFile]) -> list[FuzzFile]:
    """Each file gzipped; every other one cut short at a random point after its first half."""
    out = []
    for i, f in enumerate(files):
        packed = gzip.compress(f.data, compresslevel=6)
        g = FuzzFile(f.name + ".gz", packed, f.lines, gz=True)
        if i % 2:
            cut = rng.randrange(len(packed) // 2, len(packed) - 1)
            g.data = packed[:cut]
            text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(g.data)
            g.readable = text.count(b"\n")
        out.append(g)
    return out


# --------------------------------------------------------------------------- running and checking


@dataclass
class Outcome:
    returncode: int
    stderr: str
    scored: dict[str, dict[str, Any]]  # uid -> its --all record
    rejects: dict[tuple[str, int], dict[str, Any]]
    summary: dict[str, Any]


def run_score(paths: list[str], tmp: Path, stdin: bytes | None = None, extra: tuple[str, ...] = ()) -> Outcome:
    """``zeek-ml score`` as a real subprocess, with ``--all`` and ``--rejects`` read back."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    all_out, rej_out, notice = tmp / "all.json", tmp / "rejects.jsonl", tmp / "notice.log"
    for p in (all_out, rej_out, notice):
        p.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "zeek_ml",
        "score",
        *paths,
        "-o",
        str(notice),
        "--all",
        str(all_out),
        "--rejects",
        str(rej_out),
        "--format",
        "json",
        "--summary-json",
        "-q",
        *extra,
    ]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=600)
    stdout, stderr = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    scored: dict[str, dict[str, Any]] = {}
    if all_out.exists():
        for text in all_out.read_bytes().splitlines():
            rec = json.loads(text)
            scored.setdefault(str(rec.get("uid")), rec)
    rejects: dict[tuple[str, int], dict[str, Any]] = {}
    if rej_out.exists():
        for text in rej_out.read_bytes().splitlines():
            rec = json.loads(text)
            key = (Path(rec["file"]).name if rec["file"] != "<stdin>" else "<stdin>", rec["line"])
            assert key not in rejects, f"line rejected twice: {rec} and {rejects.get(key)}"
            rejects[key] = rec
    summary = {}
    for text in stdout.splitlines():
        if text.startswith("{"):
            summary = json.loads(text)
    return Outcome(proc.returncode, stderr, scored, rejects, summary)


def check(outcome: Outcome, files: list[FuzzFile], names: dict[str, str] | None = None) -> dict[str, int]:
    """Every line of every file scored or rejected as it must be; returns counts by expectation."""
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    tally = {VALID: 0, INVALID: 0, EITHER: 0, "lost to a gzip break": 0}
    for f in files:
        fname = (names or {}).get(f.name, f.name)
        for line in f.lines:
            where = f"{fname}:{line.number} ({line.mutation or 'unchanged'}) {line.raw[:300]!r}"
            if f.readable is not None and line.number > f.readable:
                tally["lost to a gzip break"] += 1
                assert line.uid is None or line.uid not in outcome.scored or line.number == f.readable + 1, where
                continue
            rejected = outcome.rejects.get((fname, line.number))
            scored = line.uid is not None and line.uid in outcome.scored
            tally[line.expect] += 1
            if line.expect == VALID:
                assert rejected is None, f"{where}: a valid line was rejected: {rejected}"
                assert scored, f"{where}: a valid line was not scored"
                if line.history_len is not None:
                    assert len(outcome.scored[line.uid]["history"]) == line.history_len, where
            elif line.expect == INVALID:
                assert rejected is not None, f"{where}: an invalid line was not rejected (scored: {scored})"
                assert not scored, f"{where}: a rejected line was also scored"
                assert rejected["field"] == line.field, f"{where}: rejected for {rejected}, expected {line.field}"
                assert rejected["reason"], where
            else:
                assert (rejected is None) == scored, f"{where}: rejected={rejected} scored={scored}"
        if f.readable is not None:
            broken = outcome.rejects.get((fname, f.readable + 1)) or outcome.rejects.get((fname, f.readable + 2))
            assert broken is not None and "gzip stream cut short" in broken["reason"], (fname, f.readable)
    return tally


def _write(tmp: Path, files: list[FuzzFile]) -> list[str]:
    paths = []
    for f in files:
        path = tmp / f.name
        path.write_bytes(f.data)
        paths.append(str(path))
    return paths


# --------------------------------------------------------------------------- the fuzz tests (CI)


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_corpus_every_line_scored_or_rejected(tmp_path: Path, seed: int) -> None:
    files = fuzz_corpus(seed, lines_per_file=500, files=6)
    outcome = run_score(_write(tmp_path, files), tmp_path)
    tally = check(outcome, files)
    assert tally[VALID] > 300 and tally[INVALID] > 300 and tally[EITHER] > 50, tally
    assert outcome.summary["rejected"] == len(outcome.rejects)


def test_fuzz_corpus_gzip_and_truncated_gzip(tmp_path: Path) -> None:
    rng = random.Random(3)
    files = gzip_variants(rng, fuzz_corpus(3, lines_per_file=400, files=6))
    outcome = run_score(_write(tmp_path, files), tmp_path)
    tally = check(outcome, files)
    assert tally["lost to a gzip break"] > 0, tally


@pytest.mark.parametrize("index", [0, 1, 2])
def test_fuzz_corpus_through_stdin(tmp_path: Path, index: int) -> None:
    """The same checks with the file piped in (``-``): rejects name ``<stdin>``."""
    f = fuzz_corpus(4, lines_per_file=300, files=3)[index]
    outcome = run_score(["-"], tmp_path, stdin=f.data)
    check(outcome, [f], {f.name: "<stdin>"})


# --------------------------------------------------------------------------- one test per fault case


def _zat() -> TsvSeed:
    return TsvSeed.load(SAMPLE_LOGS / "zat.conn.log")


def _tsv_case(values: dict[str, bytes] | None = None, *, prefix: bytes = b"", line_end: bytes = b"\n") -> bytes:
    """zat.conn.log's header and three real lines; the middle one (line 10) given ``values``."""
    seed = _zat()
    col = {n: i for i, n in enumerate(seed.fields)}
    rows = [list(r) for r in seed.rows[:3]]
    for i, r in enumerate(rows):
        r[col["uid"]] = f"Cgood{i}".encode()
    rows[1][col["uid"]] = b"Ccase"
    for name, value in (values or {}).items():
        rows[1][col[name]] = value
    return prefix + b"\n".join(seed.header) + b"\n" + b"".join(b"\t".join(r) + line_end for r in rows)


def _json_case(line: bytes | None = None, **values: Any) -> bytes:
    """zat.conn.json.log's first three records; the middle one (line 2) given ``values`` or replaced."""
    records = [json.loads(x) for x in (SAMPLE_LOGS / "zat.conn.json.log").read_bytes().splitlines()[:3]]
    for i, r in enumerate(records):
        r["uid"] = f"Cgood{i}"
    records[1]["uid"] = "Ccase"
    records[1].update(values)
    texts = [json.dumps(r, allow_nan=True).encode("utf-8", "surrogatepass") for r in records]
    if line is not None:
        texts[1] = line
    return b"\n".join(texts) + b"\n"


EVE_IDS = (910000000000001, 910000000000002, 910000000000003)


def _eve_case(line: bytes | None = None, changes: dict[tuple[str, ...], Any] | None = None) -> bytes:
    """Three real flow events of the eve excerpt; the middle one (line 2) changed or replaced."""
    events = [json.loads(json.dumps(e)) for e in _eve_seed()[:3]]
    for e, flow_id in zip(events, EVE_IDS):
        e["flow_id"] = flow_id
    for path, value in (changes or {}).items():
        target = events[1]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    texts = [json.dumps(e, allow_nan=True).encode("utf-8", "surrogatepass") for e in events]
    if line is not None:
        texts[1] = line
    return b"\n".join(texts) + b"\n"


def _gz_lines(n: int) -> bytes:
    seed = _zat()
    col = seed.fields.index("uid")
    rows = []
    for i in range(n):
        r = list(seed.rows[i % len(seed.rows)])
        r[col] = f"Cgz{i}".encode()
        rows.append(b"\t".join(r))
    return gzip.compress(b"\n".join(seed.header) + b"\n" + b"\n".join(rows) + b"\n")


# name -> (file content, what must happen): "kept" (the case line scored, no reject) or
# ("reject", field, reason pattern) (the case line rejected, the others scored).
CASES: dict[str, tuple[bytes, Any]] = {
    "tsv_bom_before_separator": (_tsv_case(prefix=b"\xef\xbb\xbf"), "kept"),
    "tsv_invalid_utf8_in_history": (_tsv_case({"history": b"Sh\xff\xfeAD"}), "kept"),
    "tsv_invalid_utf8_in_service": (_tsv_case({"service": b"\xc3("}), "kept"),
    "tsv_invalid_utf8_in_address": (_tsv_case({"id.orig_h": b"10.0.\xff.1"}), ("reject", "id.orig_h", "addr")),
    "tsv_bare_cr_in_a_line": (_tsv_case({"history": b"Sh\rAD"}), "kept"),
    "tsv_crlf_line_ends": (_tsv_case(line_end=b"\r\n"), "kept"),
    "tsv_count_7.0": (_tsv_case({"orig_bytes": b"7.0"}), ("reject", "orig_bytes", "invalid count value '7.0'")),
    "tsv_count_plus7": (_tsv_case({"orig_bytes": b"+7"}), ("reject", "orig_bytes", "invalid count")),
    "tsv_count_1e3": (_tsv_case({"orig_pkts": b"1e3"}), ("reject", "orig_pkts", "invalid count")),
    "tsv_count_hex": (_tsv_case({"resp_bytes": b"0x1f"}), ("reject", "resp_bytes", "invalid count")),
    "tsv_count_underscore": (_tsv_case({"resp_bytes": b"1_000"}), ("reject", "resp_bytes", "invalid count")),
    "tsv_count_negative": (_tsv_case({"missed_bytes": b"-1"}), ("reject", "missed_bytes", "never negative")),
    "tsv_count_2_64": (_tsv_case({"orig_bytes": b"18446744073709551616"}), ("reject", "orig_bytes", "out of range")),
    "tsv_port_7.0": (_tsv_case({"id.resp_p": b"80.0"}), ("reject", "id.resp_p", "invalid port")),
    "tsv_port_70000": (_tsv_case({"id.resp_p": b"70000"}), ("reject", "id.resp_p", "0-65535")),
    "tsv_time_hex_float": (_tsv_case({"ts": b"0x1.8p30"}), ("reject", "ts", "invalid time")),
    "tsv_time_underscore": (_tsv_case({"ts": b"1_379_288_667.5"}), ("reject", "ts", "invalid time")),
    "tsv_time_nan": (_tsv_case({"ts": b"nan"}), ("reject", "ts", "between 1970 and 9999")),
    "tsv_duration_inf": (_tsv_case({"duration": b"inf"}), ("reject", "duration", "finite")),
    "tsv_bool_true": (_tsv_case({"local_orig": b"true"}), ("reject", "local_orig", "invalid bool")),
    "json_bom": (b"\xef\xbb\xbf" + _json_case(), "kept"),
    "json_invalid_utf8": (_json_case(_json_case().splitlines()[1].replace(b"ShADdFar", b"Sh\xff\xfeA")), "kept"),
    "json_count_2_63": (_json_case(orig_bytes=2**63), ("reject", "orig_bytes", "out of range")),
    "json_count_negative": (_json_case(resp_pkts=-1), ("reject", "resp_pkts", "out of range")),
    "json_count_float": (_json_case(orig_bytes=7.0), ("reject", "orig_bytes", "invalid count value 7.0")),
    "json_count_string": (_json_case(orig_bytes="7"), ("reject", "orig_bytes", "invalid count")),
    "json_port_string": (_json_case(**{"id.resp_p": "88"}), ("reject", "id.resp_p", "invalid port")),
    "json_address_as_count": (_json_case(**{"id.orig_h": 167772161}), ("reject", "id.orig_h", "invalid addr")),
    "json_address_not_one": (_json_case(**{"id.resp_h": "10.18.20.256"}), ("reject", "id.resp_h", "not an IPv4")),
    "json_string_as_number": (_json_case(history=5), ("reject", "history", "invalid string")),
    "json_bool_as_string": (_json_case(local_orig="T"), ("reject", "local_orig", "invalid bool")),
    "json_set_as_string": (_json_case(tunnel_parents="Cx"), ("reject", "tunnel_parents", "invalid set")),
    "json_time_bool": (_json_case(ts=True), ("reject", "ts", "invalid time")),
    "json_time_nan": (_json_case(ts=float("nan")), ("reject", "ts", "invalid time")),
    "json_duration_infinite": (_json_case(duration=1e400), ("reject", "duration", "invalid interval")),
    "json_lone_surrogate": (_json_case(history="S\ud800"), ("reject", "history", "lone surrogate")),
    "json_too_deep": (
        _json_case(b'{"uid":"Ccase","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("reject", None, "nested too deeply"),
    ),
    "json_huge_number": (_json_case(b'{"uid":"Ccase","orig_bytes":' + b"9" * 5000 + b"}"), ("reject", None, "JSON")),
    "json_unknown_column_any_value": (_json_case(x_extra=2**80), "kept"),
    "eve_bom_and_raw_bytes": (
        b"\xef\xbb\xbf" + _eve_case(_eve_case().splitlines()[1].replace(b'"flow_id"', b'"x":"\xff\xfe","flow_id"')),
        "kept",
    ),
    "eve_bytes_2_63": (
        _eve_case(changes={("flow", "bytes_toserver"): 2**63}),
        ("reject", "flow.bytes_toserver", "invalid count"),
    ),
    "eve_packets_negative": (
        _eve_case(changes={("flow", "pkts_toclient"): -1}),
        ("reject", "flow.pkts_toclient", "invalid count"),
    ),
    "eve_address_as_count": (_eve_case(changes={("src_ip",): 167772161}), ("reject", "src_ip", "invalid address")),
    "eve_address_not_one": (_eve_case(changes={("dest_ip",): "10.0.0.256"}), ("reject", "dest_ip", "invalid address")),
    "eve_port_string": (_eve_case(changes={("dest_port",): "80"}), ("reject", "dest_port", "invalid port")),
    "eve_time_garbage": (_eve_case(changes={("flow", "start"): "yesterday"}), ("reject", "flow.start", "invalid time")),
    "eve_lone_surrogate": (_eve_case(changes={("app_proto",): "h\ud800"}), ("reject", "app_proto", "lone surrogate")),
    "eve_cut_short": (_eve_case(_eve_case().splitlines()[1][:120]), ("reject", None, "invalid JSON")),
}


def _case_name(case: str) -> str:
    kind = case.split("_", 1)[0]
    return f"{case}.{ {'json': 'conn.json.log', 'eve': 'eve.json'}.get(kind, 'conn.log') }"


def _case_uids(case: str) -> tuple[str, str, str]:
    """The uids of a case file's three lines (first, the case line, last): unique to the case."""
    i = list(CASES).index(case)
    if case.startswith("eve"):
        return str(EVE_IDS[0] + 10 * i), str(EVE_IDS[1] + 10 * i), str(EVE_IDS[2] + 10 * i)
    return f"C{i}g0", f"C{i}x", f"C{i}g2"


def _case_data(case: str) -> bytes:
    data = CASES[case][0]
    if case.startswith("eve"):
        placeholders = [str(x).encode() for x in EVE_IDS]
    else:
        placeholders = [b"Cgood0", b"Ccase", b"Cgood2"]
    for old, new in zip(placeholders, _case_uids(case)):
        data = data.replace(old, new.encode())
    return data


@pytest.fixture(scope="module")
def cases_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, Path]:
    tmp = tmp_path_factory.mktemp("cases")
    paths = []
    for name in CASES:
        path = tmp / _case_name(name)
        path.write_bytes(_case_data(name))
        paths.append(str(path))
    return run_score(paths, tmp), tmp


@pytest.mark.parametrize("case", list(CASES))
def test_fault_case(cases_run: tuple[Outcome, Path], case: str) -> None:
    outcome, _ = cases_run
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    _, expect = CASES[case]
    fname = _case_name(case)
    first, middle, last = _case_uids(case)
    assert {first, last} <= set(outcome.scored), "the good lines around the case line were not scored"
    mine = {k: v for k, v in outcome.rejects.items() if k[0] == fname}
    case_line = 10 if case.startswith("tsv") else 2
    if expect == "kept":
        assert not mine, mine
        assert middle in outcome.scored
    else:
        assert middle not in outcome.scored
        _, field_name, pattern = expect
        assert list(mine) == [(fname, case_line)], mine
        reject = mine[(fname, case_line)]
        assert reject["field"] == field_name, reject
        assert pattern in reject["reason"], reject


def test_fault_cases_leave_every_other_line_scored(cases_run: tuple[Outcome, Path]) -> None:
    outcome, _ = cases_run
    kept = sum(1 for _, expect in CASES.values() if expect == "kept")
    # three lines a file; every file's two good lines, and the case line where it is kept
    assert outcome.summary["scored"] == 2 * len(CASES) + kept, outcome.summary
    assert outcome.summary["rejected"] == len(CASES) - kept


def test_invalid_utf8_kept_replaced_in_conn_fields_exact_elsewhere(tmp_path: Path) -> None:
    """Bytes that are not UTF-8: the line is kept. In conn.log's own fields (text the pipeline uses,
    where Zeek never writes such bytes) each becomes U+FFFD; in any other column they stay exactly
    as they were and the enriched log writes them back as Zeek escapes them (``\\xHH``)."""
    seed = _zat()
    header = [
        h + (b"\tx_note" if h.startswith(b"#fields") else b"\tstring" if h.startswith(b"#types") else b"")
        for h in seed.header
    ]
    row = [*seed.rows[0], b"n\xffo\\x41"]
    row[seed.fields.index("history")] = b"Sh\xff\xfeAD"
    row[seed.fields.index("uid")] = b"Cbytes"
    (tmp_path / "bytes.conn.log").write_bytes(b"\n".join(header) + b"\n" + b"\t".join(row) + b"\n")
    outcome = run_score([str(tmp_path / "bytes.conn.log")], tmp_path)
    assert outcome.returncode == 0 and not outcome.rejects, (outcome.stderr, outcome.rejects)
    assert outcome.scored["Cbytes"]["history"] == "Sh\ufffd\ufffdAD"
    assert outcome.scored["Cbytes"]["x_note"] == "n\\xffoA"  # JSON text \\xff: Zeek's escape of byte 0xff


def test_corrupt_gzip_scores_what_was_readable_and_says_where(tmp_path: Path) -> None:
    packed = _gz_lines(3000)
    corrupt = bytearray(packed)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 40] = bytes(b ^ 0xA5 for b in corrupt[middle : middle + 40])
    (tmp_path / "corrupt.conn.log.gz").write_bytes(bytes(corrupt))
    (tmp_path / "cut.conn.log.gz").write_bytes(packed[:middle])
    (tmp_path / "after.conn.log").write_bytes(_tsv_case())
    outcome = run_score(
        [str(tmp_path / n) for n in ("corrupt.conn.log.gz", "cut.conn.log.gz", "after.conn.log")], tmp_path
    )
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stderr
    text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(packed[:middle])
    whole = text.count(b"\n") - 8  # data lines that decompress whole before the cut
    assert all(f"Cgz{i}" in outcome.scored for i in range(whole - 1))
    cut = [r for (f, _), r in outcome.rejects.items() if f == "cut.conn.log.gz"]
    assert len(cut) == 1 and re.search(r"gzip stream cut short: it ends at compressed byte \d+", cut[0]["reason"])
    assert cut[0]["line"] == whole + 9, cut[0]
    broken = [r for (f, _), r in outcome.rejects.items() if f == "corrupt.conn.log.gz"]
    assert re.search(r"gzip stream corrupt at compressed byte \d+", broken[-1]["reason"]), broken[-1]
    assert sum(f"Cgz{i}" in outcome.scored for i in range(1000)) >= 900  # the first third decompressed cleanly
    assert all(u in outcome.scored for u in ("Cgood0", "Ccase", "Cgood2"))  # and the next file was read


def test_a_1mib_value_is_capped_at_read_time(tmp_path: Path) -> None:
    """A 1 MiB ``history`` among many distinct ones: kept, cut to 4,096 characters, memory flat."""
    records = [json.loads(x) for x in (SAMPLE_LOGS / "zat.conn.json.log").read_bytes().splitlines()]
    lines = []
    for i in range(400):
        r = dict(records[i % len(records)])
        r["uid"] = f"Cl{i}"
        r["history"] = "ShAD" + "d" * (i % 97) + "a" * (i // 97)  # distinct histories, as on a busy sensor
        lines.append(r)
    lines[200]["history"] = "ShADadFf" * (1 << 17)  # 1 MiB
    path = tmp_path / "long.conn.json.log"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    all_out = tmp_path / "all.json"
    cmd = [
        sys.executable,
        "-m",
        "zeek_ml",
        "score",
        str(path),
        "-o",
        str(tmp_path / "n.log"),
        "--all",
        str(all_out),
        "--format",
        "json",
        "-q",
    ]
    # The child reports its own peak (VmHWM of its address space after exec): ru_maxrss from wait4
    # would include the pages it shared with this (large) test process when it was forked.
    probe = (
        "import atexit, runpy, sys\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            print('VMHWM', line.split()[1], file=sys.stderr)\n"
        "atexit.register(peak)\n"
        "sys.argv = ['zeek-ml', *sys.argv[1:]]\n"
        "runpy.run_module('zeek_ml', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd[3:]],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    out = {r["uid"]: r for r in map(json.loads, all_out.read_text().splitlines())}
    assert len(out) == 400
    assert out["Cl200"]["history"] == ("ShADadFf" * 512), len(out["Cl200"]["history"])
    peak_mib = int(proc.stderr.split("VMHWM")[-1].split()[0]) / 1024
    assert peak_mib < 600, f"peak RSS {peak_mib:.0f} MiB"  # uncapped: about 400 x 1 MiB x 20 letters


def test_a_line_without_end_is_skipped_without_holding_it(tmp_path: Path) -> None:
    """40 MiB with no newline between two good lines: one reject, both good lines scored."""
    seed = _zat()
    col = seed.fields.index("uid")
    first, last = list(seed.rows[0]), list(seed.rows[1])
    first[col], last[col] = b"Cbefore", b"Cafter"
    path = tmp_path / "endless.conn.log"
    with open(path, "wb") as f:
        f.write(b"\n".join(seed.header) + b"\n" + b"\t".join(first) + b"\n")
        chunk = b"x" * (1 << 20)
        for _ in range(40):
            f.write(chunk)
        f.write(b"\n" + b"\t".join(last) + b"\n")
    outcome = run_score([str(path)], tmp_path)
    assert outcome.returncode == 0, outcome.stderr
    assert {"Cbefore", "Cafter"} <= set(outcome.scored)
    [reject] = outcome.rejects.values()
    assert reject["line"] == 10 and "longer than 16 MiB" in reject["reason"], reject


# --------------------------------------------------------------------------- stdin


def test_stdin_from_zcat(tmp_path: Path) -> None:
    """``zcat conn.log.gz | zeek-ml score - -o notice.log``: the same notices as the file itself."""
    source = SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"
    piped = subprocess.run(
        f"zcat {source} | {sys.executable} -m zeek_ml score - -o {tmp_path / 'a.log'} -q",
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert piped.returncode == 0, piped.stderr
    direct = run_cli("score", str(source), "-o", str(tmp_path / "b.log"), "-q")
    assert direct.returncode == 0, direct.stderr
    strip = [line for line in (tmp_path / "a.log").read_text().splitlines() if not line.startswith(("#open", "#close"))]
    assert strip == [x for x in (tmp_path / "b.log").read_text().splitlines() if not x.startswith(("#open", "#close"))]
    assert len(strip) > 9  # a header and notices


def test_stdin_gzip_json_and_eve_by_content(tmp_path: Path) -> None:
    """Gzip bytes, Zeek JSON and Suricata eve.json on stdin are each recognised like a file."""
    for name, data in (
        ("gzip", (SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz").read_bytes()),
        ("json", (SAMPLE_LOGS / "zat.conn.json.log").read_bytes()),
        ("eve", EVE_SEED.read_bytes()),
    ):
        outcome = run_score(["-"], tmp_path, stdin=data)
        assert outcome.returncode == 0, (name, outcome.stderr)
        expected = {"gzip": 992, "json": 50, "eve": 12}[name]
        assert outcome.summary["scored"] == expected, (name, outcome.summary)


def test_stdin_headerless_zeek_cut_with_fields(tmp_path: Path) -> None:
    """``zeek-cut`` output (no header) piped in, columns named by ``--fields``; rejects name <stdin>."""
    seed = _zat()
    names = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "orig_bytes", "history"]
    idx = [seed.fields.index(n) for n in names]
    rows = [b"\t".join(r[i] for i in idx) for r in seed.rows[:50]]
    rows[7] = rows[7].replace(rows[7].split(b"\t")[7], b"1e3", 1)
    data = b"\n".join(rows) + b"\n"
    outcome = run_score(["-"], tmp_path, stdin=data, extra=("--fields", ",".join(names)))
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["scored"] == 49
    [(where, reject)] = outcome.rejects.items()
    assert where == ("<stdin>", 8) and reject["file"] == "<stdin>" and reject["field"] == "orig_bytes", reject


def test_stdin_pipe_that_trickles_like_a_consumer(tmp_path: Path) -> None:
    """A producer that writes line by line with pauses (a Kafka consumer): every line scored."""
    source = SAMPLE_LOGS / "ssh_sshguess.conn.json.log"
    producer = (
        f"import sys,time\nfor line in open({str(source)!r},'rb'):\n"
        "    sys.stdout.buffer.write(line); sys.stdout.flush(); time.sleep(0.02)\n"
    )
    cmd = (
        f"{sys.executable} -c {shlex_quote(producer)} | {sys.executable} -m zeek_ml score - -o - --format json "
        f"--all {tmp_path / 'all.json'} -q"
    )
    proc = subprocess.run(
        cmd,
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "all.json").read_text().splitlines()) == 11


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_stdin_named_twice_is_one_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "zeek_ml", "score", "-", "-", "-o", str(tmp_path / "n.log")],
        input=b"",
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "standard input named twice" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- property tests (in-process)

CONN = [
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("local_orig", "bool"),
    ("history", "string"),
    ("tunnel_parents", "set[string]"),
]

_INT_TEXT = re.compile(r" *-?[0-9]+ *")
_FLOAT_TEXT = re.compile(
    r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *|"
    r" *[+-]?(?:inf|infinity|nan) *",
    re.IGNORECASE,
)


def tsv_value_ok(text: str, zeek_type: str, name: str) -> bool:
    """The spec, written independently of the reader: may ``text`` stand in a TSV field of this type?"""
    if text == "-":
        return True
    if zeek_type in ("count", "port"):
        if not _INT_TEXT.fullmatch(text):
            return False
        return 0 <= int(text) <= (65535 if zeek_type == "port" else 2**63 - 1)
    if zeek_type in ("time", "interval"):
        if not _FLOAT_TEXT.fullmatch(text):
            return False
        x = float(text)
        if zeek_type == "time":
            return 0 <= x < 253402300800
        return math.isfinite(x) and (name != "duration" or x >= 0)
    if zeek_type == "bool":
        return text in ("T", "F", "1", "0")
    if zeek_type == "addr":
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return True
    return True


def _numbers(good: list[str]) -> st.SearchStrategy[str]:
    odd = [
        "7.0",
        "+7",
        "1e3",
        "0x1f",
        "0X10",
        " 0x10",
        "1_000",
        "-1",
        "-0",
        "007",
        " 7",
        "7 ",
        "",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "0x1p3",
        "1.5",
        ".5",
        "5.",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "65535",
        "65536",
        "\u0667",
        "1\u00a0",
        "253402300799.9",
        "253402300800",
    ]
    return st.one_of(
        st.sampled_from(good + odd),
        st.integers(-(2**65), 2**65).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(alphabet="0123456789+-.eExX_ ", max_size=8),
    )


TSV_TEXT = st.text(
    alphabet=st.characters(exclude_characters="\t\n", exclude_categories=("Cs",)), max_size=12
) | st.binary(max_size=12).map(lambda b: b.replace(b"\t", b"").replace(b"\n", b"").decode("latin-1"))
TSV_VALUES: dict[str, st.SearchStrategy[str]] = {
    "time": _numbers(["1379288667.706265", "0", "1.5"]),
    "port": _numbers(["80", "0", "443"]),
    "count": _numbers(["0", "12", "4096"]),
    "interval": _numbers(["0.5", "0", "12.000001"]),
    "bool": st.sampled_from(["T", "F", "1", "0", "-", "t", "true", "", " T"]),
    "addr": st.sampled_from(["10.0.0.1", "::1", "fe80::1", "256.0.0.1", "10.0.0.01", "a", "", "1.2.3"]) | TSV_TEXT,
    "enum": st.sampled_from(["tcp", "udp", "-"]) | TSV_TEXT,
    "string": TSV_TEXT,
    "set[string]": st.sampled_from(["(empty)", "-", "C1,C2"]) | TSV_TEXT,
}


def _tsv_text(value: str) -> bytes:
    return value.encode("latin-1") if all(ord(c) < 256 for c in value) else value.encode("utf-8")


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(*[TSV_VALUES[t] for _, t in CONN]), min_size=1, max_size=12))
def test_property_tsv_lines(tmp_path: Path, rows: list[tuple[str, ...]]) -> None:
    """Random TSV lines: valid ones read with their values, invalid ones rejected naming a bad field."""
    from zeek_ml.sources.files import read_frames
    from zeek_ml.sources.reading import RejectLog

    header = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\t"
        + "\t".join(n for n, _ in CONN)
        + "\n#types\t"
        + "\t".join(t for _, t in CONN)
        + "\n"
    )
    lines, expect = [], {}
    for i, row in enumerate(rows):
        values = list(row)
        values[1] = f"U{i}"  # uid
        bad = {n for (n, t), v in zip(CONN, values) if not tsv_value_ok(v, t, n)}
        expect[i] = bad
        lines.append(b"\t".join(_tsv_text(v) for v in values))
    path = tmp_path / "p.conn.log"
    path.write_bytes(header.encode() + b"\n".join(lines) + b"\n")
    rejects = RejectLog(keep=1000)
    frame = read_frames(path, rejects=rejects)
    got = {r.line - 8: r for r in rejects.first}
    uids = list(frame["uid"]) if len(frame) else []
    for i, bad in expect.items():
        if bad:
            assert i in got and got[i].field in bad, (rows[i], bad, got.get(i))
            assert f"U{i}" not in uids
        else:
            assert i not in got, (rows[i], got.get(i))
            assert f"U{i}" in uids
            j = uids.index(f"U{i}")
            text = rows[i][8].strip()
            if text != "-":
                assert int(frame["orig_bytes"].iloc[j]) == int(text)
            ts = rows[i][0].strip()
            if ts != "-":
                assert frame["ts"].iloc[j] == float(ts)


JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "time": st.one_of(
        st.floats(-1e12, 3e11), st.integers(0, 10**14), st.sampled_from(["2024-01-01T00:00:00Z", "x"]), JSON_ANY
    ),
    "port": st.one_of(st.integers(-5, 70000), JSON_ANY),
    "count": st.one_of(st.integers(-5, 2**64), JSON_ANY),
    "interval": st.one_of(st.floats(), JSON_ANY),
    "bool": st.one_of(st.booleans(), JSON_ANY),
    "addr": st.one_of(st.sampled_from(["10.0.0.1", "::1", "300.1.1.1", "x"]), JSON_ANY),
    "enum": st.one_of(st.sampled_from(["tcp", "udp"]), JSON_ANY),
    "string": st.one_of(st.text(max_size=10), JSON_ANY),
    "set[string]": st.one_of(st.lists(st.text(max_size=4), max_size=3), JSON_ANY),
}


def json_value_ok(v: Any, zeek_type: str, name: str) -> bool:
    """The spec for JSON values, written independently of the reader."""
    if v is None:
        return True
    if zeek_type in ("count", "port"):
        return type(v) is int and 0 <= v <= (65535 if zeek_type == "port" else 2**63 - 1)
    if zeek_type == "time":
        if type(v) is str:
            return v == "2024-01-01T00:00:00Z"
        if type(v) is int:
            x = v / 1000 if abs(v) >= 10**11 else v
        elif type(v) is float:
            x = v
        else:
            return False
        return 0 <= x < 253402300800
    if zeek_type == "interval":
        return type(v) in (int, float) and math.isfinite(v) and (name != "duration" or v >= 0)
    if zeek_type == "bool":
        return type(v) is bool
    if zeek_type == "set[string]":
        return type(v) is list and all(type(e) is str for e in v)
    if type(v) is not str:
        return False
    if zeek_type == "addr":
        try:
            ipaddress.ip_address(v)
        except ValueError:
            return False
    return True


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(*[JSON_VALUES[t] for _, t in CONN]), min_size=1, max_size=12))
def test_property_json_lines(tmp_path: Path, rows: list[tuple[Any, ...]]) -> None:
    """Random JSON records: valid ones read, invalid ones rejected naming a bad field, nothing raises."""
    from zeek_ml.sources.files import read_frames
    from zeek_ml.sources.reading import RejectLog

    lines, expect = [], {}
    for i, row in enumerate(rows):
        obj = {n: v for (n, _), v in zip(CONN, row) if v is not None}
        obj["uid"] = f"U{i}"
        bad = {n for (n, t), v in zip(CONN, row) if n != "uid" and not json_value_ok(v, t, n)}
        expect[i] = bad
        lines.append(json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass"))
    path = tmp_path / "p.conn.json.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejects = RejectLog(keep=1000)
    frame = read_frames(path, rejects=rejects)
    got = {r.line - 1: r for r in rejects.first}
    uids = list(frame["uid"]) if len(frame) else []
    for i, bad in expect.items():
        lone = any(isinstance(v, str) and not _utf8(v) for v in _strings(rows[i]))
        if bad or lone:
            assert i in got, (rows[i], bad)
            assert got[i].field in bad or lone, (rows[i], bad, got[i])
        else:
            assert i not in got, (rows[i], got.get(i))
            assert f"U{i}" in uids


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return out


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _real_text(kind: str) -> bytes:
    if kind == "tsv":
        seed = _zat()
        return b"\n".join(seed.header) + b"\n" + b"".join(b"\t".join(r) + b"\n" for r in seed.rows[:12])
    if kind == "json":
        return b"\n".join((SAMPLE_LOGS / "zat.conn.json.log").read_bytes().splitlines()[:12]) + b"\n"
    return EVE_SEED.read_bytes()


EDITS = st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 3), st.binary(min_size=0, max_size=4)), min_size=1, max_size=12
)


@settings(max_examples=200 * SCALE, deadline=None)
@given(kind=st.sampled_from(["tsv", "json", "eve"]), edits=EDITS, tail=st.binary(max_size=64))
def test_property_damaged_real_logs_never_raise(kind: str, edits: list[tuple[float, int, bytes]], tail: bytes) -> None:
    """Real logs with bytes replaced, inserted or deleted anywhere (headers included) and junk
    appended: the reader reads or rejects every line; only a file that is no longer a log at all
    (an unusable header) is a one-line SourceError; no other exception escapes."""
    import io

    from zeek_ml.sources.files import _iter_lines
    from zeek_ml.sources.reading import ReadContext, ReadStats, RejectLog, SourceError

    text = bytearray(_real_text(kind))
    for where, op, data in edits:
        pos = int(where * len(text))
        if op == 0:
            text[pos:pos] = data
        elif op == 1:
            del text[pos : pos + len(data) + 1]
        else:
            text[pos : pos + len(data)] = data
    text += tail
    ctx = ReadContext(RejectLog(), ReadStats(), 1 << 12, True, None)  # small batches: more boundaries
    try:
        frames = list(_iter_lines(io.BytesIO(bytes(text)), "x.log", ctx))
    except SourceError as e:
        message = str(e)
        assert "\n" not in message and any(k in message for k in ("#fields", "#separator")), message
        return
    rows = sum(len(f) for f in frames)
    accounted = rows + ctx.stats.rejected + ctx.stats.ignored_events + ctx.stats.blank
    pieces = bytes(text).split(b"\n")  # every line read or rejected; one more reject may name a whole
    if pieces[-1] == b"":  # array that is cut short
        pieces.pop()
    start = bytes(text).lstrip(b" \t\r\n")  # as the reader skips what precedes the first line
    start = start[3:].lstrip(b" \t\r\n") if start.startswith(b"\xef\xbb\xbf") else start
    data_lines = [
        p
        for p in start.split(b"\n")
        if p.strip(b" \t\r\0\xef\xbb\xbf") and not (kind == "tsv" and p.lstrip(b"\xef\xbb\xbf").startswith(b"#"))
    ]
    assert len(data_lines) <= accounted <= len(pieces) + 1, (len(data_lines), accounted, ctx.stats)


# --------------------------------------------------------------------------- the large campaign


def campaign(lines: int, workdir: Path, seed0: int = 100) -> dict[str, Any]:
    """Run fuzz corpora through the CLI until ``lines`` lines were fuzzed; every check must hold."""
    done = 0
    totals: dict[str, int] = {}
    runs = 0
    started = time.perf_counter()
    seed = seed0
    while done < lines:
        rng = random.Random(seed)
        files = fuzz_corpus(seed, lines_per_file=1000, files=12)
        if seed % 3 == 1:
            files = gzip_variants(rng, files)
        run_dir = workdir / f"run{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        if seed % 5 == 2:
            f = files[0]
            outcome = run_score(["-"], run_dir, stdin=f.data)
            tally = check(outcome, [f], {f.name: "<stdin>"})
            files = [f]
        else:
            outcome = run_score(_write(run_dir, files), run_dir)
            tally = check(outcome, files)
        for k, v in tally.items():
            totals[k] = totals.get(k, 0) + v
        n = sum(len(f.lines) for f in files)
        done += n
        runs += 1
        print(f"seed {seed}: {n:,} lines ({len(files)} files), {tally}; total {done:,}", flush=True)
        seed += 1
    return {"lines": done, "runs": runs, "seconds": round(time.perf_counter() - started, 1), **totals}


def main() -> None:
    parser = argparse.ArgumentParser(description="Large fuzz campaign through `zeek-ml score`.")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--dir", default="/tmp/zeek-ml-fuzz")
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    result = campaign(args.lines, Path(args.dir), args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
