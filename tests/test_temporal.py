"""Per-host temporal context on real Zeek rows: streaming == one shot, checkpoints, a brute-force oracle."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SAMPLE_LOGS, TEST_DATA
from zeek_ml.features.context import FAILED_STATES, TEMPORAL_NAMES, HostContext
from zeek_ml.sources.files import read_frames

# real lab capture (an nmap SYN scan, then a connect scan), first rows in log order
LAB = TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz"


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return read_frames([str(LAB)]).head(3000).reset_index(drop=True)


def test_batches_and_checkpoints_give_the_one_shot_answer(lab: pd.DataFrame) -> None:
    whole = HostContext().update(lab)
    ctx = HostContext()
    parts = []
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, len(lab)), 6, replace=False))
    for a, b in zip([0, *cuts], [*cuts, len(lab)], strict=True):
        parts.append(ctx.update(lab.iloc[a:b]))
        ctx = HostContext.from_state(json.loads(json.dumps(ctx.state())))  # restart from a JSON checkpoint
    np.testing.assert_array_equal(pd.concat(parts).to_numpy(), whole.to_numpy())
    assert list(whole.columns) == list(TEMPORAL_NAMES)
    assert whole.index.equals(lab.index)


def test_an_arrays_snapshot_restores_what_the_json_state_restores(lab: pd.DataFrame) -> None:
    """``snapshot()`` / ``restore_snapshot()`` (the watcher's checkpoint) leave the same context as
    ``state()`` / ``restore()``: the same state, tables and address ids, and the same features after;
    here with scanners whose minute window is longer than the 32 connections a host keeps."""
    from zeek_ml.features import hostkernel

    long_windows = False
    for cut in (0, 1, 1800):
        ctx = HostContext()
        ctx.update(lab.iloc[:cut])
        long_windows |= bool((ctx._o[0][:, hostkernel.WCNT] > ctx._o[0][:, hostkernel.RCNT]).any())
        by_json = HostContext()
        by_json.restore(json.loads(json.dumps(ctx.state())))
        meta, arrays = ctx.snapshot()
        by_arrays = HostContext()
        by_arrays.restore_snapshot(json.loads(json.dumps(meta)), {k: v.copy() for k, v in arrays.items()})
        assert by_arrays.state() == by_json.state() == ctx.state()
        assert by_arrays._intern.strs == by_json._intern.strs
        for a, b in zip(by_arrays._o + by_arrays._r, by_json._o + by_json._r, strict=True):
            np.testing.assert_array_equal(a, b)
        rest = lab.iloc[cut:]
        after = by_arrays.update(rest).to_numpy()
        np.testing.assert_array_equal(after, by_json.update(rest).to_numpy())
        np.testing.assert_array_equal(after, ctx.update(rest).to_numpy())
    assert long_windows  # a scanner's window was longer than its connections kept when it was snapshot


def _oracle(lab: pd.DataFrame, k: int) -> np.ndarray:
    """Brute force: each row looks back over the rows logged before it (log order, not ts order)."""
    out = np.zeros((len(lab), 5))
    oh = lab["id.orig_h"].astype(str).to_numpy()
    rh = lab["id.resp_h"].astype(str).to_numpy()
    rp = lab["id.resp_p"].to_numpy(dtype=float).astype(int)
    failed = lab["conn_state"].astype(str).isin(FAILED_STATES).to_numpy()
    for i in range(len(lab)):
        prev = [j for j in range(i) if oh[j] == oh[i]]
        last = prev[-k:]
        if not last:
            continue
        out[i, 0] = len(last)
        out[i, 1] = len({rh[j] for j in last})
        out[i, 2] = len({rp[j] for j in last})
        out[i, 3] = failed[last].mean()
        out[i, 4] = np.mean([rp[j] == rp[i] for j in last])
    return out


def test_features_match_a_brute_force_oracle(lab: pd.DataFrame) -> None:
    sub = lab.head(1500)
    got = HostContext(k=8).update(sub)
    want = _oracle(sub, k=8)
    cols = ["orig_prev_conns", "orig_distinct_resp_h", "orig_distinct_resp_p", "orig_failed_share",
            "orig_same_resp_p_share"]  # fmt: skip
    np.testing.assert_allclose(got[cols].to_numpy(), want[:, :5], rtol=1e-6, atol=1e-6)
    first = ~sub.duplicated("id.orig_h")  # first row of each originator has no history
    assert (got.loc[first, "orig_first_seen"] == 1).all() and (got.loc[~first, "orig_first_seen"] == 0).all()
    # a real scan is visible: some nmap row's originator reached many distinct ports
    scan = sub["detailedlabel"].astype(str).str.contains("scan").to_numpy()
    if scan.any():
        assert got.loc[scan, "orig_distinct_resp_p"].max() >= 6


def test_time_window_counts_recent_starts(lab: pd.DataFrame) -> None:
    sub = lab.head(800)
    got = HostContext(window_s=5.0).update(sub)
    ts = sub["ts"].to_numpy(dtype=float)
    oh = sub["id.orig_h"].astype(str).to_numpy()
    assert not (np.diff(ts) >= 0).all()  # Zeek logs at connection end: ts is not sorted
    for i in range(0, len(sub), 37):
        prev = [j for j in range(i) if oh[j] == oh[i]]
        # the host's queue, in log order, drops from its oldest end whenever a row starts > 5 s later
        q: list[float] = []
        for j in [*prev, i]:
            while q and q[0] < ts[j] - 5.0:
                q.pop(0)
            if j != i:
                q.append(ts[j])
        assert got["orig_conns_window"].iloc[i] == len(q), i


def test_memory_is_bounded_and_hosts_expire(lab: pd.DataFrame) -> None:
    small = HostContext(max_hosts=5)
    small.update(lab)
    assert len(small.orig) <= 5 and len(small.resp) <= 5
    assert lab["id.orig_h"].nunique() > 5
    ctx = HostContext(ttl_s=1.0)
    ctx.update(lab)
    limit = ctx.clock - 1.0
    assert all(h.last_seen >= limit for h in ctx.orig.values())
    assert len(ctx.orig) < lab["id.orig_h"].nunique()
    assert all(len(h.recent) <= ctx.k for h in ctx.orig.values())


def test_restore_refuses_other_parameters(lab: pd.DataFrame) -> None:
    ctx = HostContext(k=8)
    ctx.update(lab.head(50))
    with pytest.raises(ValueError, match="parameters"):
        HostContext(k=16).restore(ctx.state())
    assert math.isfinite(json.loads(json.dumps(ctx.state()))["clock"])


def test_empty_batch_and_missing_columns() -> None:
    ctx = HostContext()
    assert ctx.update(pd.DataFrame()).shape == (0, len(TEMPORAL_NAMES))
    f = pd.DataFrame({"ts": [1.0, 2.0], "id.orig_h": ["10.0.0.1", "10.0.0.1"], "id.resp_h": ["10.0.0.2", None]})
    out = ctx.update(f)
    assert out["orig_prev_conns"].tolist() == [0.0, 1.0]


def test_sequences_hold_the_originators_previous_connections(lab: pd.DataFrame) -> None:
    from zeek_ml.features.context import SEQ_FIELDS

    sub = lab.head(600)
    ctx = HostContext(seq_k=4)
    ctx.update(sub)
    seq = ctx.last_sequences
    assert seq is not None and seq.shape == (len(sub), len(SEQ_FIELDS), 4)
    oh = sub["id.orig_h"].astype(str).to_numpy()
    rp = sub["id.resp_p"].to_numpy(dtype=float).astype(int)
    ob = sub["orig_bytes"].to_numpy(dtype=float, na_value=0.0)
    for i in range(0, len(sub), 29):
        prev = [j for j in range(i) if oh[j] == oh[i]][-4:][::-1]  # most recent first
        present = seq[i, SEQ_FIELDS.index("present")]
        assert present.tolist() == [1.0] * len(prev) + [0.0] * (4 - len(prev))
        for slot, j in enumerate(prev):
            assert seq[i, SEQ_FIELDS.index("same_resp_p"), slot] == float(rp[j] == rp[i])
            assert seq[i, SEQ_FIELDS.index("log_orig_bytes"), slot] == pytest.approx(np.log1p(ob[j]), rel=1e-5)
    assert HostContext().update(sub) is not None and HostContext().last_sequences is None


def test_hosts_expire_per_row_so_batch_boundaries_never_change_a_feature() -> None:
    # A real day of traffic (CTU-Normal-40, 24 h): hosts go quiet for longer than the TTL,
    # so expiry happens inside the run; one batch or many must give the same features.
    frame = read_frames([SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"])
    span = frame["ts"].max() - frame["ts"].min()
    ctx = HostContext(ttl_s=600.0)
    assert span > 10 * ctx.ttl_s
    whole = ctx.update(frame).to_numpy()
    expired = len(frame["id.orig_h"].unique()) + len(frame["id.resp_h"].unique()) - len(ctx)
    assert expired > 0  # the test is only worth something if hosts did expire mid-run
    pieces = HostContext(ttl_s=600.0)
    batched = np.concatenate([pieces.update(frame.iloc[i : i + 97]).to_numpy() for i in range(0, len(frame), 97)])
    np.testing.assert_array_equal(whole, batched)
