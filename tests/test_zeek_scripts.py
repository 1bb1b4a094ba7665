"""The Zeek package: every .zeek file parses and is zeek-format clean; its records are zeek_ml.formats.records'.

No Zeek binary here: the scripts are checked with zeekscript (Zeek's own
tree-sitter grammar), and the shared definitions are compared against the parse
tree, field by field. The btest suite in ``zeek_scripts/testing`` runs them in
Zeek (``zkg test`` or ``cd zeek_scripts/testing && btest``).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, need
from zeek_ml.formats import records as shared

PACKAGE = ROOT / "zeek_scripts"
MAIN = PACKAGE / "scripts" / "main.zeek"
ZEEK_FILES = sorted(PACKAGE.rglob("*.zeek"))


def tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} not found (pip install zeekscript)")
    return path  # type: ignore[return-value]


def test_there_are_scripts_and_btests() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in ZEEK_FILES}
    assert {"scripts/__load__.zeek", "scripts/main.zeek"} <= names
    assert any(n.startswith("testing/tests/") for n in names)


@pytest.mark.parametrize("path", ZEEK_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_parses(path: Path) -> None:
    out = subprocess.run([tool("zeek-script"), "parse", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert "ERROR" not in out.stdout and "MISSING" not in out.stdout


@pytest.mark.parametrize("path", ZEEK_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_zeek_format_leaves_it_unchanged(path: Path) -> None:
    out = subprocess.run([tool("zeek-format"), str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == path.read_text(), f"zeek-format would change {path}"


def test_parse_error_is_detected(tmp_path: Path) -> None:
    """The check above can fail: a broken script is rejected."""
    bad = tmp_path / "bad.zeek"
    bad.write_text("module X;\nevent zeek_init()\n\t{\n\tlocal x = ;\n\t}\n")
    out = subprocess.run([tool("zeek-script"), "parse", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


# --------------------------------------------------------------------------- the parse tree


class Tree:
    """main.zeek's parse tree, with text access."""

    def __init__(self, path: Path):
        zeekscript = pytest.importorskip("zeekscript")
        script = zeekscript.Script(str(path))
        assert script.parse(), f"{path} does not parse"
        self.root = script.root
        self.source = path.read_bytes()

    def text(self, node: Any) -> str:
        return self.source[node.start_byte : node.end_byte].decode()

    def walk(self, node: Any = None) -> Iterator[Any]:
        node = node or self.root
        yield node
        for child in node.children or []:
            yield from self.walk(child)

    def records(self) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
        """``type NAME: record {...}`` -> [(field, type, attributes)] in declaration order."""
        out: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
        for node in self.walk():
            if node.type != "type_decl":
                continue
            name = self.text(next(c for c in node.children if c.type == "id"))
            body = [c for c in node.children if c.type == "type"][-1]  # the first is the keyword
            if not self.text(body).startswith("record"):
                continue
            fields = []
            for spec in (c for c in body.children if c.type == "type_spec"):
                ident = next(c for c in spec.children if c.type == "id")
                ftype = next(c for c in spec.children if c.type == "type")
                attrs = next((c for c in spec.children if c.type == "attr_list"), None)
                attributes = tuple(self.text(a) for a in attrs.children if a.type == "attr") if attrs else ()
                fields.append((self.text(ident), " ".join(self.text(ftype).split()), attributes))
            out[name] = fields
        return out

    def decls(self, kind: str) -> dict[str, str]:
        """``const``/``option``/``global`` declarations: name -> whole text, whitespace-normalized."""
        out = {}
        for node in self.walk():
            if node.type == f"{kind}_decl":
                text = " ".join(self.text(node).split())
                out[text.split()[1].rstrip(":")] = text
        return out


@pytest.fixture(scope="module")
def tree() -> Tree:
    return Tree(MAIN)


def _expected(fields: tuple[shared.RecordField, ...]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.name, f.zeek_type, f.attributes) for f in fields]


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        (shared.CONN_RECORD, shared.CONN_FIELDS),
        (shared.VERDICT_RECORD, shared.VERDICT_FIELDS),
        (shared.NOTICE_INFO_RECORD, shared.NOTICE_INFO_FIELDS),
    ],
)
def test_records_match_the_shared_definition(tree: Tree, record: str, fields: tuple[shared.RecordField, ...]) -> None:
    module, name = record.split("::")
    assert module == shared.MODULE
    got = tree.records()[name]
    assert got == _expected(fields), f"main.zeek's {record} differs from zeek_ml.formats.records:\n" + "\n".join(
        f"  script {g}  python {e}" for g, e in zip(got, _expected(fields)) if g != e
    )


def test_record_check_can_fail(tree: Tree) -> None:
    """Swapping two fields, or dropping &optional, is caught."""
    swapped = list(shared.VERDICT_FIELDS)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert tree.records()["Verdict"] != _expected(tuple(swapped))
    loosened = [*shared.CONN_FIELDS[:-1], shared.RecordField("tunnel_parents", "set[string]")]
    assert tree.records()["FinishedConn"] != _expected(tuple(loosened))


def test_conn_event_carries_every_field_from_the_conn_log_record(tree: Tree) -> None:
    """conn_from_log sets each required field in the constructor, each optional one only when set."""
    body = " ".join(MAIN.read_text().split("function conn_from_log(rec: Conn::Info): FinishedConn", 1)[1].split())
    body = body[: body.index("return c;")]
    constructor = re.search(r"local c = FinishedConn\((.*?)\);", body)
    assert constructor, "conn_from_log must build the record with FinishedConn(...)"
    assigned = dict(re.findall(r"\$(\w+)=([\w$]+)", constructor.group(1)))
    for field in shared.CONN_FIELDS:
        source = shared.CONN_SOURCES[field.name]
        if field.optional:
            assert f"if ( {source.replace('$', '?$', 1)} ) c${field.name} = {source};" in body, field.name
            assert field.name not in assigned
        else:
            assert assigned.get(field.name) == source, field.name
    assert len(assigned) == sum(not f.optional for f in shared.CONN_FIELDS)
    assert body.count(" c$") == sum(f.optional for f in shared.CONN_FIELDS)


def test_events_topics_and_notice_type(tree: Tree) -> None:
    from zeek_ml.notices.notice import NOTE

    glob = tree.decls("global")
    conn_event = shared.CONN_EVENT.split("::")[1]
    verdict_event = shared.VERDICT_EVENT.split("::")[1]
    assert glob[conn_event] == f"global {conn_event}: event(c: {shared.CONN_RECORD.split('::')[1]});"
    assert glob[verdict_event] == f"global {verdict_event}: event(v: {shared.VERDICT_RECORD.split('::')[1]});"
    consts = tree.decls("const")
    assert consts["conn_topic"] == f'const conn_topic = "{shared.CONN_TOPIC}" &redef;'
    assert consts["verdict_topic"] == f'const verdict_topic = "{shared.VERDICT_TOPIC}" &redef;'
    assert consts["broker_host"] == 'const broker_host = "127.0.0.1" &redef;'
    assert consts["broker_port"] == "const broker_port = 9966/tcp &redef;"  # zeek-ml broker's default --listen
    assert set(tree.decls("option")) == {"score_threshold", "suppress_for"}
    text = " ".join(MAIN.read_text().split())
    assert NOTE == "ZeekML::Suspicious_Connection" and "redef enum Notice::Type += { ## " in text
    assert re.search(r"Suspicious_Connection, };", text)
    assert "redef record Notice::Info += { ## " in text and "zeek_ml: NoticeInfo &log &optional; };" in text
    # Both transports raise the notice the same way, suppressed per incident (else per originator).
    assert "n$identifier = v?$incident ? v$incident : cat(v$orig_h);" in text and "$suppress_for=suppress_for" in text
    assert "Broker::publish(conn_topic, conn_finished, conn_from_log(rec));" in text
    assert "$fields=Verdict, $ev=verdict_line, $want_record=T, $mode=Input::STREAM" in text
    from zeek_ml.cli import build_parser

    assert "127.0.0.1:9966" in build_parser()._subparsers._group_actions[0].choices["broker"].format_help()


def test_every_export_is_documented() -> None:
    """Each declaration in the export block has a ``##`` comment right above it (Zeekygen docs)."""
    lines = MAIN.read_text().splitlines()
    start = lines.index("export {")
    end = lines.index("}", start)
    for i in range(start + 1, end):
        line = lines[i].strip()
        if re.match(r"^(const|option|global|type) ", line) or re.match(r"^\w+: .*;$", line):
            assert lines[i - 1].strip().startswith("##"), f"main.zeek:{i + 1}: {line} has no ## comment"
    assert lines[0].startswith("##!")


# --------------------------------------------------------------------------- the zkg package


def test_zkg_meta() -> None:
    meta = configparser.ConfigParser()
    meta.read(PACKAGE / "zkg.meta")
    pkg = meta["package"]
    assert (PACKAGE / pkg["script_dir"] / "__load__.zeek").is_file()
    assert (PACKAGE / pkg["script_dir"] / "__load__.zeek").read_text().strip() == "@load ./main"
    assert pkg["depends"].split() == ["zeek", ">=6.0"]
    for key in ("summary", "description", "tags"):
        assert pkg[key].strip()
    assert "btest" in pkg["test_command"] and "testing" in pkg["test_command"]
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(PACKAGE / "testing" / "btest.cfg")
    assert cfg["btest"]["TestDirs"] == "tests"
    assert cfg["environment"]["PACKAGE"].endswith("/../scripts")


def test_btest_expectations_are_in_the_canned_verdict_file() -> None:
    """The btest greps for connections of the canned verdict file; they must be there."""
    btest = (PACKAGE / "testing" / "tests" / "verdict-file.zeek").read_text()
    canned = (PACKAGE / "testing" / "Files" / "verdicts.log").read_text().splitlines()
    rows = [ln.split("\t") for ln in canned if not ln.startswith("#")]
    expected = re.findall(r"Suspicious_Connection\t(\S+)\t(\S+)\t(\d+)\t(\S+)\$", btest)
    assert len(expected) == len(rows) == 3
    got = {(r[1], r[2], r[5].split("/")[0], r[8]) for r in rows}
    assert set(expected) == got
    score = re.search(r"score=(\S+) [^\t]*\t(\S+)\t(\S+)\$", btest)
    assert score and any(r[6] == score.group(2) and r[7] == score.group(3) for r in rows)
    assert f"{float(score.group(2)):.3f}" == score.group(1)
