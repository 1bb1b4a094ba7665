"""Feature tests on real conn.log rows (sample_logs/, a slice of CTU-Normal-40)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zeek_ml.features.conn import FEATURE_SPEC, Feature, FeatureSpec, compute_features
from zeek_ml.sources.files import read_frames

SAMPLE = "sample_logs/ctu-normal-40.first2000.conn.log.labeled.gz"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return read_frames([SAMPLE])


def col(X: np.ndarray, name: str) -> np.ndarray:
    return X[:, FEATURE_SPEC.index(name)]


def code(name: str, value: str) -> int:
    return FEATURE_SPEC.features[FEATURE_SPEC.index(name)].vocab.index(value)


def test_shape_dtype_no_nan(frame: pd.DataFrame) -> None:
    X = compute_features(frame)
    assert X.shape == (len(frame), len(FEATURE_SPEC))
    assert X.dtype == np.float32
    assert np.isfinite(X).all()
    assert 30 <= len(FEATURE_SPEC) <= 60
    assert not {"id.orig_h", "id.resp_h", "id.orig_p", "id.resp_p"} & set(FEATURE_SPEC.names)


def test_hand_checked_row(frame: pd.DataFrame) -> None:
    # CHLXQF2OBY4onAR0Ug: 147.32.81.167:62771 -> 40.74.108.123:443 tcp ssl 1.135424 s,
    # 1596/4039 bytes, SF, local T/F, missed 5138, ShADdaFf, 14 pkts/1016 ip bytes, 16/1226
    row = frame.index[frame["uid"] == "CHLXQF2OBY4onAR0Ug"][0]
    x = compute_features(frame.loc[[row]])
    v = dict(zip(FEATURE_SPEC.names, x[0].tolist(), strict=True))
    assert v["duration"] == pytest.approx(1.135424)
    assert (v["orig_bytes"], v["resp_bytes"], v["orig_pkts"], v["resp_pkts"]) == (1596, 4039, 14, 16)
    assert v["missed_bytes"] == 5138
    assert v["orig_bytes_per_pkt"] == pytest.approx(1596 / 14)
    assert v["resp_bytes_per_pkt"] == pytest.approx(4039 / 16)
    assert v["resp_orig_bytes_ratio"] == pytest.approx(4040 / 1597)
    assert v["resp_orig_pkts_ratio"] == pytest.approx(17 / 15)
    assert v["orig_ip_overhead_per_pkt"] == 0  # ip_bytes < bytes (missed bytes): clipped
    assert v["resp_ip_overhead_per_pkt"] == 0
    for flag in ("hist_orig_S", "hist_resp_h", "hist_orig_A", "hist_orig_D", "hist_resp_d", "hist_resp_a"):
        assert v[flag] == 1, flag
    assert v["hist_orig_F"] == v["hist_resp_f"] == 1
    assert v["hist_orig_R"] == v["hist_resp_r"] == v["hist_caret"] == 0
    assert (v["history_len"], v["history_orig_letters"], v["history_resp_letters"]) == (8, 4, 4)
    assert v["duration_missing"] == v["bytes_missing"] == v["history_missing"] == 0
    assert v["proto"] == code("proto", "tcp")
    assert v["service"] == code("service", "ssl")
    assert v["conn_state"] == code("conn_state", "SF")
    assert v["resp_port_class"] == code("resp_port_class", "https")
    assert v["orig_port_class"] == code("orig_port_class", "ephemeral")
    assert v["local_orig"] == code("local_orig", "true")
    assert v["local_resp"] == code("local_resp", "false")
    assert v["history_first"] == code("history_first", "S")


def test_unset_values_and_unknown_columns(frame: pd.DataFrame) -> None:
    f = frame.head(3).copy()
    f["duration"] = np.nan
    f["orig_bytes"] = pd.array([pd.NA] * 3, dtype="Int64")
    f["service"] = pd.NA
    f["history"] = pd.NA
    f["local_orig"] = pd.array([pd.NA] * 3, dtype="boolean")
    f["conn_state"] = "XYZ"
    X = compute_features(f.drop(columns=["local_resp"]))
    assert np.isfinite(X).all()
    assert (col(X, "duration_missing") == 1).all() and (col(X, "duration") == 0).all()
    assert (col(X, "bytes_missing") == 1).all()
    assert (col(X, "history_missing") == 1).all()
    assert (col(X, "service") == code("service", "unset")).all()
    assert (col(X, "history_first") == code("history_first", "unset")).all()
    assert (col(X, "local_orig") == code("local_orig", "unknown")).all()
    assert (col(X, "local_resp") == code("local_resp", "unknown")).all()
    assert (col(X, "conn_state") == code("conn_state", "other")).all()


def test_object_dtype_strings_give_same_result(frame: pd.DataFrame) -> None:
    f = frame.head(200)
    g = f.astype({c: object for c in ("proto", "service", "conn_state", "history")})
    np.testing.assert_array_equal(compute_features(f), compute_features(g))


def test_spec_json_round_trip() -> None:
    text = FEATURE_SPEC.to_json()
    again = FeatureSpec.from_json(text)
    assert again == FEATURE_SPEC
    assert again.to_json() == text
    assert FEATURE_SPEC.differences(again) == []


def test_spec_differences_named() -> None:
    feats = list(FEATURE_SPEC.features)
    i = FEATURE_SPEC.index("service")
    feats[i] = Feature("service", "categorical", (*feats[i].vocab[:-1], "quic2", "unset"))
    other = FeatureSpec(FEATURE_SPEC.name, FEATURE_SPEC.version + 1, tuple(feats))
    diffs = " ".join(FEATURE_SPEC.differences(other))
    assert "version" in diffs and "service" in diffs and "vocabulary" in diffs
    with pytest.raises(ValueError, match="version"):
        compute_features(pd.DataFrame(), other)
