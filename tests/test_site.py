"""Direction and severity rules (zeek_ml/site.py) on real conn rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SAMPLE_LOGS, run_cli
from zeek_ml.notices.site import arrow_texts, directions, local_discovery, severities, severity, severity_rank, texts
from zeek_ml.sources.files import iter_batches, read_frames
from zeek_ml.sources.local_nets import LocalNets


def _conns(rows: list[tuple[str, str]], local: list[tuple[object, object]] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"id.orig_h": [r[0] for r in rows], "id.resp_h": [r[1] for r in rows]})
    if local is not None:
        frame["local_orig"] = pd.array([x[0] for x in local], dtype="boolean")
        frame["local_resp"] = pd.array([x[1] for x in local], dtype="boolean")
    return frame


def test_directions_from_local_nets() -> None:
    conns = _conns(
        [
            ("203.0.113.7", "10.0.0.5"),  # inbound
            ("10.0.0.5", "203.0.113.7"),  # outbound
            ("10.0.0.5", "10.0.0.9"),  # internal
            ("198.51.100.1", "203.0.113.7"),  # external
            ("10.0.0.5", "224.0.0.251"),  # mDNS from a local host: internal
            ("192.168.1.20", "192.168.1.255"),  # subnet broadcast of a local net: internal
            ("10.0.0.5", "not-an-address"),
        ]
    )
    got = directions(conns, LocalNets.parse("10.0.0.0/8,192.168.1.0/24"))
    assert got.tolist() == ["inbound", "outbound", "internal", "external", "internal", "internal", "outbound"]
    # the same addresses under other local nets flip
    assert directions(conns, LocalNets.parse("203.0.113.0/24"))[:2].tolist() == ["outbound", "inbound"]


def test_zeek_local_flags_win_where_set() -> None:
    conns = _conns(
        [("203.0.113.7", "198.51.100.1"), ("10.0.0.5", "10.0.0.9")],
        local=[(False, True), (None, None)],  # Zeek says row 0 is inbound; row 1 is unset: nets decide
    )
    assert directions(conns, LocalNets()).tolist() == ["inbound", "internal"]
    assert directions(conns, LocalNets(), prefer_zeek=False).tolist() == ["external", "internal"]


def test_real_log_with_local_flags(shared_data) -> None:
    path = shared_data / "zeek_unlabeled/more/rita/test_data__missing_host__2024-04-19__conn.10-00-00-11-00-00.log.gz"
    batch = next(iter_batches([path]))
    got = directions(batch, LocalNets())
    lo = batch["local_orig"].fillna(False).to_numpy(dtype=bool)
    lr = batch["local_resp"].fillna(False).to_numpy(dtype=bool)
    assert (got[~lo & lr] == "inbound").all() and (got[lo & ~lr] == "outbound").all()
    assert (got == "inbound").mean() > 0.9  # an Internet-facing sensor: almost all inbound


def test_sample_logs_without_flags_use_private_space() -> None:
    batch = next(iter_batches([SAMPLE_LOGS]))
    got = directions(batch.assign(local_orig=pd.NA, local_resp=pd.NA), LocalNets())
    assert set(got) <= {"inbound", "outbound", "internal", "external"}
    private = batch["id.orig_h"].astype(str).str.startswith(("10.", "192.168."))
    assert not (got[private.to_numpy()] == "inbound").any()


def test_severity_rules() -> None:
    assert severity("inbound", hosts=500, ports=500, conns=10_000) == "low"  # unsolicited probing
    assert severity("external") == "low"
    assert severity("outbound") == "medium"
    assert severity("outbound", "C&C") == "high"
    assert severity("internal", "PartOfAHorizontalPortScan") == "high"
    assert severity("internal", hosts=10) == "high"  # horizontal scan
    assert severity("internal", ports=10) == "high"  # vertical scan
    assert severity("outbound", conns=500) == "high"  # flood / brute force
    assert severity("outbound", hosts=9, ports=9, conns=499) == "medium"
    got = severities(np.array(["inbound", "outbound", "internal"], dtype=object), ["DDoS", "", "C&C"])
    assert got.tolist() == ["low", "medium", "high"]
    assert [severity_rank(s) for s in ("low", "medium", "high")] == [0, 1, 2]
    with pytest.raises(ValueError):
        severity_rank("critical")


def test_bad_local_net_is_an_error() -> None:
    with pytest.raises(ValueError):
        LocalNets.parse("10.0.0.0/33")
    assert LocalNets.parse(" ,").nets == LocalNets().nets


def test_link_local_discovery_chatter_is_not_a_notice_unless_asked(shared_data: Path, tmp_path: Path) -> None:
    # Real home networks: mDNS, LLMNR and NetBIOS to multicast/broadcast addresses, unanswered (S0)
    # by design; the model flags them like inbound probes.
    logs = [shared_data / "zeek_unlabeled/more" / d / "conn.log" for d in ("YasmineAlii-Threat-Detection", "Infomate")]
    conns = read_frames(logs)
    chatter = local_discovery(conns)
    assert chatter.sum() > 20 and not local_discovery(conns[~chatter]).any()
    assert set(conns.loc[chatter, "id.resp_p"].astype(int)) <= {137, 138, 1900, 3702, 5353, 5355, 67, 68}
    args = ["score", *map(str, logs), "-o", str(tmp_path / "n.log"), "--no-aggregate", "--summary-json", "-q"]
    quiet = run_cli(*args)
    told = run_cli(*args, "--notice-local-discovery")
    assert quiet.returncode == 0 and told.returncode == 0, quiet.stderr + told.stderr
    every = json.loads(told.stdout)["notices"]
    assert every >= 10  # the model does flag them ...
    assert json.loads(quiet.stdout)["notices"] == 0  # ... and none becomes a notice by default


def test_local_discovery_rules_alike_on_columns_as_read_and_as_python_objects() -> None:
    rows = [  # (resp_h, resp_p, proto, is chatter)
        ("224.0.0.251", 5353, "udp", True),
        ("239.255.255.250", 1900, "udp", True),
        ("FF02::FB", 5353, "udp", True),
        ("ff02::1:3", 5355, "udp", True),
        ("192.168.1.255", 137, "udp", True),
        ("255.255.255.255", 67, "udp", True),
        ("223.0.0.251", 5353, "udp", False),  # just below multicast
        ("240.0.0.1", 5353, "udp", False),  # just above
        ("224.0.0.251", 5353, "tcp", False),
        ("224.0.0.251", 53, "udp", False),
        ("192.168.1.25", 137, "udp", False),
        ("10.0.0.255", None, "udp", False),  # no port
        (None, 5353, "udp", False),
        ("fe80::1", 5353, None, False),
    ]
    expected = [r[3] for r in rows]
    as_read = pd.DataFrame(
        {
            "id.resp_h": pd.array([r[0] for r in rows], dtype="str"),
            "id.resp_p": pd.array([r[1] for r in rows], dtype="Int64"),
            "proto": pd.array([r[2] for r in rows], dtype="str"),
        }
    )
    assert local_discovery(as_read).tolist() == expected
    assert local_discovery(as_read.astype(object)).tolist() == expected


@pytest.mark.parametrize(
    "values",
    [
        pd.array(["10.0.0.1", None, "ff02::fb", "10.0.0.1"], dtype="str"),
        pd.array([80, None, 0, 65535], dtype="Int64"),
        pd.array(["tcp", "udp", None, "icmp"], dtype=object),
        pd.array([1.0, None, 2.5, 80.0], dtype="Float64"),  # neither text nor integer: through texts()
        np.array([80.0, np.nan, 2.5, 1e20]),
    ],
)
def test_arrow_texts_are_texts(values) -> None:
    series = pd.Series(values)
    assert arrow_texts(series).to_pylist() == texts(series).tolist()
