"""The fast per-host context equals the slow reference (the implementation before issue 13), bit for bit.

Random streams of Zeek conn rows (few hosts and many, repeated peers and ports, ts going back and forth,
gaps beyond the time window and the expiry, far-off ts that the stream clock clamps or takes as a new
epoch, missing values), cut into random batches with JSON checkpoints at random points, restored into
the *other* implementation as often as into the same one: every feature, every sequence and every
checkpoint must be identical. A real capture (tests/data) is compared the same way.
"""

from __future__ import annotations

import json
import math
import random
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import temporal_current as cur
from tests import temporal_reference as ref
from tests.conftest import SAMPLE_LOGS, TEST_DATA
from zeek_ml.features import context as fast
from zeek_ml.sources.files import read_frames

STATES = ["S0", "SF", "REJ", "RSTO", "S1", "SH", "OTH", None]
PARAMS = st.fixed_dictionaries(
    {
        "k": st.sampled_from([1, 2, 3, 5, 32]),
        "window_s": st.sampled_from([0.5, 5.0, 60.0]),
        "ttl_s": st.sampled_from([2.0, 30.0, 3600.0]),
        "max_hosts": st.sampled_from([1, 3, 100_000]),
        "seq_k": st.sampled_from([0, 0, 4]),
    }
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """A conn frame in log order and where to cut it: ``(row, how)`` with how in none/same/swap."""
    n = draw(st.integers(1, 120))
    hosts = draw(st.integers(1, 40))
    ips = [f"10.0.{i // 200}.{i % 200}" for i in range(hosts)] + [None]
    t = 1_700_000_000.0
    ts: list[float | None] = []
    for _ in range(n):
        step = draw(
            st.sampled_from(["near", "near", "near", "back", "window", "ttl", "far", "far_back", "nan", "same"])
        )
        if step == "near":
            t += draw(st.floats(0.0, 2.0, allow_nan=False))
        elif step == "back":
            t -= draw(st.floats(0.0, 50.0, allow_nan=False))
        elif step == "window":
            t += draw(st.floats(60.0, 400.0, allow_nan=False))
        elif step == "ttl":
            t += draw(st.floats(3600.0, 8000.0, allow_nan=False))
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
    frame = pd.DataFrame(
        {
            "ts": ts,
            "uid": [f"C{i}" for i in range(n)],
            "id.orig_h": draw(st.lists(pick, min_size=n, max_size=n)),
            "id.resp_h": draw(st.lists(pick, min_size=n, max_size=n)),
            "id.resp_p": draw(st.lists(st.sampled_from([22, 53, 80, 443, 8080, None]), min_size=n, max_size=n)),
            "conn_state": draw(st.lists(st.sampled_from(STATES), min_size=n, max_size=n)),
            "orig_bytes": draw(st.lists(st.sampled_from([0, 1, 60, 1500, 10**9, -1, None]), min_size=n, max_size=n)),
            "resp_bytes": draw(st.lists(st.sampled_from([0, 7, 4000, None, 0.5]), min_size=n, max_size=n)),
        }
    )
    cuts = draw(st.lists(st.tuples(st.integers(1, n), st.sampled_from(["none", "same", "swap"])), max_size=6))
    return frame, sorted(set(cuts))


def _json(state: dict) -> dict:
    return json.loads(json.dumps(state))


def _run_both(frame: pd.DataFrame, cuts: list[tuple[int, str]], params: dict) -> None:
    """Feed both implementations the same batches; compare features, sequences and checkpoints."""
    seq_k = params.pop("seq_k", 0)
    a, b = ref.HostContext(**params, seq_k=seq_k), fast.HostContext(**params, seq_k=seq_k)
    bounds = [0, *[c for c, _ in cuts], len(frame)]
    hows = ["none", *[h for _, h in cuts]]
    for lo, hi, how in zip(bounds[:-1], bounds[1:], hows, strict=True):
        if how != "none":  # a restart: from JSON, into the same implementation or the other one
            sa, sb = _json(a.state()), _json(b.state())
            if how == "swap":
                sa, sb = sb, sa
            a, b = ref.HostContext.from_state(sa), fast.HostContext.from_state(sb)
            a.seq_k = b.seq_k = seq_k
        part = frame.iloc[lo:hi]
        fa, fb = a.update(part), b.update(part)
        np.testing.assert_array_equal(fb.to_numpy(), fa.to_numpy())
        assert list(fb.columns) == list(fa.columns) and fb.index.equals(fa.index)
        if seq_k:
            np.testing.assert_array_equal(b.last_sequences, a.last_sequences)
        assert json.dumps(b.state()) == json.dumps(a.state())
        assert b.clock == a.clock or (math.isinf(a.clock) and math.isinf(b.clock))
        assert len(b) == len(a)
    # the end of the stream: rows still held by the clock are resolved the same way
    assert b.time.settle() == a.time.settle()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=streams(), params=PARAMS)
def test_fast_context_equals_the_reference_on_random_streams(stream: tuple, params: dict) -> None:
    frame, cuts = stream
    _run_both(frame, cuts, dict(params))


@pytest.mark.parametrize(
    "path",
    [
        TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz",
        SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz",
    ],
    ids=["lab-nmap", "ctu-normal-40"],
)
def test_fast_context_equals_the_reference_on_real_captures(path) -> None:
    frame = read_frames([str(path)]).reset_index(drop=True)
    cuts = [(len(frame) // 3, "swap"), (len(frame) // 2, "none"), (2 * len(frame) // 3, "same")]
    _run_both(frame, cuts, {"ttl_s": 600.0, "seq_k": 4})
    _run_both(frame, cuts, {"k": 8, "window_s": 5.0, "max_hosts": 20})


def _cv_as_before(times: list[float]) -> float:
    """The reference's per-row regularity (HostContext._side), in float64, before the float32 cast."""
    gaps = [b - a for a, b in pairwise(times)]
    mu = sum(gaps) / len(gaps)
    if mu > 0:
        return math.sqrt(sum((g - mu) * (g - mu) for g in gaps) / len(gaps)) / mu
    return 0.0


@pytest.mark.parametrize("k", [3, 5, 32])
@pytest.mark.parametrize("full", [True, False], ids=["all-k-starts", "3-to-k-starts"])
def test_vectorised_regularity_equals_the_per_row_sums_in_float64(k: int, full: bool) -> None:
    """The float64 values, not only their float32 features: a different summation order shows here."""
    rng = random.Random(k)
    snaps = []
    for _ in range(3000):
        n = k if full else rng.randint(3, k)
        base = rng.choice([0.0, 1.7e9])
        draw = rng.choice([lambda: rng.random() * 100, lambda: float(rng.randint(0, 3)), lambda: rng.expovariate(1)])
        snaps.append(tuple(sorted(base + draw() for _ in range(n))))
    got = cur._iat_cv(snaps, k)  # the order the compiled loop reproduces (see test_temporal_current.py)
    want = np.array([_cv_as_before(list(t)) for t in snaps])
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    assert (want > 0).any()


def test_the_reference_is_really_a_different_implementation() -> None:
    """The comparison is not vacuous: the reference module is its own copy, not the fast one."""
    assert ref.HostContext is not fast.HostContext and ref.__file__ != fast.__file__
