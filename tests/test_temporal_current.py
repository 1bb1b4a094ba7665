"""The compiled per-host context equals the Python loop it replaced (``tests/temporal_current.py``, the
implementation at db654c2), bit for bit: features, sequences, every checkpoint, and what the stream clock
still holds at the end.

Random streams (hosts reused and new, duplicate ts, ts going back and forth, bursts that fill the time
window beyond ``k``, gaps beyond the window and the expiry, far-off ts that the clock clamps or takes as a
new epoch, missing values, address columns that are not plain strings), cut into batches at random points,
with JSON checkpoints restored into the same implementation or the other one, ``max_hosts`` small enough
to evict and ``ttl_s`` short enough to expire, and the interned addresses compacted at every batch or
never. The fast implementation also runs as plain Python (the compiled extension off) in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import temporal_current as cur
from tests.conftest import SAMPLE_LOGS, TEST_DATA
from zeek_ml.features import context as fast
from zeek_ml.features import hostkernel
from zeek_ml.sources.files import read_frames

STATES = ["S0", "SF", "REJ", "RSTO", "S1", "SH", "OTH", "RSTOS0", None]
PARAMS = st.fixed_dictionaries(
    {
        "k": st.sampled_from([1, 2, 3, 4, 8, 32]),
        "window_s": st.sampled_from([0.0, 0.5, 5.0, 60.0]),
        "ttl_s": st.sampled_from([0.0, 2.0, 30.0, 3600.0]),
        "max_hosts": st.sampled_from([0, 1, 2, 3, 7, 100_000]),
        "seq_k": st.sampled_from([0, 0, 0, 3]),
    }
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """A conn frame in log order and where to cut it: ``(row, how)``, how in none/same/swap."""
    n = draw(st.integers(1, 200))
    hosts = draw(st.integers(1, 60))
    ips: list = [f"10.{i % 3}.{i // 200}.{i % 200}" for i in range(hosts)] + [None]
    kind = draw(st.sampled_from(["str", "str", "str", "mixed", "category"]))
    if kind == "mixed":  # not plain strings: str() of each value decides (1 and 1.0 are two hosts)
        ips += [1, 1.0, "1", 2.5, float("nan")]
    t = draw(st.sampled_from([0.0, 1_700_000_000.0, 1_700_000_000.123456]))
    ts: list[float | None] = []
    for _ in range(n):
        step = draw(
            st.sampled_from(
                ["near", "near", "near", "same", "same", "back", "burst", "window", "ttl", "far", "far_back", "nan"]
            )
        )
        if step == "near":
            t += draw(st.floats(0.0, 2.0, allow_nan=False))
        elif step == "back":
            t -= draw(st.floats(0.0, 90.0, allow_nan=False))
        elif step == "burst":
            t += draw(st.sampled_from([1e-6, 0.001, 0.1]))
        elif step == "window":
            t += draw(st.floats(5.0, 400.0, allow_nan=False))
        elif step == "ttl":
            t += draw(st.floats(30.0, 8000.0, allow_nan=False))
        if step == "far":  # a day and more away: clamped, or a new epoch when rows agree
            ts.append(t + draw(st.sampled_from([2 * 86400.0, 3 * 86400.0, 400 * 86400.0])))
            if draw(st.booleans()):
                t = ts[-1]
        elif step == "far_back":
            ts.append(t - draw(st.sampled_from([2 * 86400.0, 30 * 86400.0])))
            if draw(st.booleans()):
                t = ts[-1]
        else:
            ts.append(None if step == "nan" else t)
    pick = st.sampled_from(ips)
    busy = draw(st.lists(pick, min_size=1, max_size=3))  # a few hosts take most rows
    both = st.one_of(pick, st.sampled_from(busy), st.sampled_from(busy))
    frame = pd.DataFrame(
        {
            "ts": ts,
            "uid": [f"C{i}" for i in range(n)],
            "id.orig_h": draw(st.lists(both, min_size=n, max_size=n)),
            "id.resp_h": draw(st.lists(both, min_size=n, max_size=n)),
            "id.resp_p": draw(st.lists(st.sampled_from([22, 53, 80, 443, 8080, 0, None]), min_size=n, max_size=n)),
            "conn_state": draw(st.lists(st.sampled_from(STATES), min_size=n, max_size=n)),
            "orig_bytes": draw(
                st.lists(st.sampled_from([0, 1, 60, 1500, 10**9, 2**60, -1, None, 0.1]), min_size=n, max_size=n)
            ),
            "resp_bytes": draw(st.lists(st.sampled_from([0, 7, 4000, None, 0.5, 1e300, 3.3]), min_size=n, max_size=n)),
        }
    )
    if kind == "category":
        frame["id.orig_h"] = frame["id.orig_h"].astype("category")
        frame["conn_state"] = frame["conn_state"].astype("category")
    drop = draw(st.sampled_from([None, None, None, "id.resp_h", "conn_state", "orig_bytes", "id.resp_p"]))
    if drop:
        frame = frame.drop(columns=[drop])
    cuts = draw(st.lists(st.tuples(st.integers(1, n), st.sampled_from(["none", "same", "swap"])), max_size=8))
    return frame, sorted(set(cuts))


def _json(state: dict) -> dict:
    return json.loads(json.dumps(state))


def run_both(frame: pd.DataFrame, cuts: list[tuple[int, str]], params: dict, compact: bool = False) -> None:
    """Feed both implementations the same batches; compare features, sequences and checkpoints."""
    params = dict(params)
    seq_k = params.pop("seq_k", 0)
    a, b = cur.HostContext(**params, seq_k=seq_k), fast.HostContext(**params, seq_k=seq_k)
    bounds = [0, *[c for c, _ in cuts], len(frame)]
    hows = ["none", *[h for _, h in cuts]]
    for lo, hi, how in zip(bounds[:-1], bounds[1:], hows, strict=True):
        if how != "none":  # a restart: from JSON, into the same implementation or the other one
            sa, sb = _json(a.state()), _json(b.state())
            if how == "swap":
                sa, sb = sb, sa
            a, b = cur.HostContext.from_state(sa), fast.HostContext.from_state(sb)
            a.seq_k = b.seq_k = seq_k
        if compact:
            b.ID_FLOOR = 0
        part = frame.iloc[lo:hi]
        fa, fb = a.update(part), b.update(part)
        assert fb.dtypes.tolist() == fa.dtypes.tolist()
        np.testing.assert_array_equal(fb.to_numpy().view(np.uint32), fa.to_numpy().view(np.uint32))
        assert list(fb.columns) == list(fa.columns) and fb.index.equals(fa.index)
        if a.last_sequences is None:  # no seq_k, or an empty first batch after a restart
            assert b.last_sequences is None
        else:
            np.testing.assert_array_equal(b.last_sequences.view(np.uint32), a.last_sequences.view(np.uint32))
        assert json.dumps(b.state()) == json.dumps(a.state())
        assert b.clock == a.clock or (math.isinf(a.clock) and math.isinf(b.clock))
        assert len(b) == len(a)
        assert list(b.orig) == list(a.orig) and list(b.resp) == list(a.resp)  # LRU order
    assert b.time.settle() == a.time.settle()  # rows still held by the clock resolve the same way


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=streams(), params=PARAMS, compact=st.booleans())
def test_compiled_context_equals_the_python_loop_on_random_streams(stream: tuple, params: dict, compact: bool) -> None:
    frame, cuts = stream
    run_both(frame, cuts, params, compact)


@pytest.mark.parametrize(
    "path",
    [
        TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz",
        SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz",
        SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log",
    ],
    ids=["lab-nmap", "ctu-normal-40", "slips-scan"],
)
def test_compiled_context_equals_the_python_loop_on_real_captures(path: Path) -> None:
    frame = read_frames([str(path)]).reset_index(drop=True)
    cuts = [(len(frame) // 3, "swap"), (len(frame) // 2, "none"), (2 * len(frame) // 3, "same")]
    run_both(frame, cuts, {"ttl_s": 600.0, "seq_k": 4})
    run_both(frame, cuts, {"k": 8, "window_s": 5.0, "max_hosts": 20}, compact=True)
    run_both(frame, [], {})


def test_many_distinct_addresses_are_forgotten_with_their_hosts() -> None:
    """Millions of one-off addresses do not stay interned: the ids follow the hosts in memory."""
    rng = np.random.default_rng(7)
    ctx = fast.HostContext(max_hosts=50)
    ctx.ID_FLOOR = 1000
    ref = cur.HostContext(max_hosts=50)
    for b in range(6):
        n = 2000
        frame = pd.DataFrame(
            {
                "ts": 1.7e9 + b * 10 + np.sort(rng.random(n)),
                "id.orig_h": [f"10.{b}.{i // 256}.{i % 256}" for i in range(n)],
                "id.resp_h": rng.choice(["192.168.0.1", "192.168.0.2"], n),
                "id.resp_p": 443,
                "conn_state": "SF",
            }
        )
        np.testing.assert_array_equal(ctx.update(frame).to_numpy(), ref.update(frame).to_numpy())
    assert json.dumps(ctx.state()) == json.dumps(ref.state())
    assert len(ctx._intern) <= 4 * (50 * (1 + ctx.k) + 50) + 2000


def test_the_compiled_kernel_runs_and_shares_the_python_layout() -> None:
    """The extension built at install is what runs here (this suite fails where it was not built), and it
    reads the tables with the same column numbers as the Python functions."""
    from zeek_ml.features import _hostkernel

    assert hostkernel.COMPILED
    assert hostkernel.rows is _hostkernel.rows
    assert {name: getattr(hostkernel, name) for name in _hostkernel.LAYOUT} == _hostkernel.LAYOUT


def test_plain_python_gives_the_same_features() -> None:
    """``ZEEK_ML_PURE_PYTHON=1`` (or the extension not built): the Python functions, the same answer."""
    code = """
import json, sys
import numpy as np
from zeek_ml.features import context, hostkernel
from zeek_ml.sources.files import read_frames
from tests import temporal_current as cur
assert not hostkernel.COMPILED
frame = read_frames([sys.argv[1]]).head(400)
a, b = cur.HostContext(k=8, max_hosts=30), context.HostContext(k=8, max_hosts=30)
for part in (frame.iloc[:150], frame.iloc[150:]):
    assert np.array_equal(a.update(part).to_numpy(), b.update(part).to_numpy())
assert json.dumps(a.state()) == json.dumps(b.state())
print("ok")
"""
    env = {**os.environ, "ZEEK_ML_PURE_PYTHON": "1"}
    path = str(TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code, path], env=env, cwd=root, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_reference_is_really_the_python_loop() -> None:
    assert cur.HostContext is not fast.HostContext and cur.__file__ != fast.__file__
    assert hasattr(cur, "_Host") and not hasattr(fast, "_Host")


def test_compaction_after_slots_were_reused_across_an_earlier_compaction() -> None:
    """The stream hypothesis found (``tests/data/context-remap-regression.json``): renaming the ids of
    a ring's leftover entries, which can name ids from before an earlier compaction, crashed."""
    doc = json.loads((TEST_DATA / "context-remap-regression.json").read_text())
    frame = pd.DataFrame(doc["columns"])
    for name in ("uid", "id.orig_h", "id.resp_h"):
        frame[name] = frame[name].astype("str")
    run_both(frame, [tuple(c) for c in doc["cuts"]], doc["params"], doc["compact"])
