"""Training data: labelled captures (one conn.log each), their families, the default splits and sample weights."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zeek_ml.features.conn import compute_features
from zeek_ml.model.conn_model import sha256_file

MODEL_NAME = "conn-cnn-v1"

MODEL_VERSION = 1

#: held-out test captures (substring of the file name). Why these:
#: - 010 (CTU-Normal-42): one of three days of the same CTU host; 008 trains, 011 validates
#: - CTU-IoT-Malware-Capture-42-1: an IoT-23 device never seen in training (mostly benign,
#:   6 malicious rows: a benign-FPR test more than a recall test)
#: - lab part1: the lab attacks of run2 on another run, plus attack kinds absent from
#:   run2 (horizontal SSH scan, nmap UDP/service scans); run2 must train because it is the
#:   only capture with diverse benign traffic (unanswered UDP, mDNS, dead resolvers...)
DEFAULT_HOLDOUT: tuple[str, ...] = (
    "010-zeek-mixed",
    "CTU-IoT-Malware-Capture-42-1",
    "lab-namespaces-2026.part1",
)

#: validation captures: the threshold is chosen on their benign rows
DEFAULT_VALIDATION: tuple[str, ...] = ("011-zeek-mixed", "CTU-Honeypot-Capture-4-1")

#: unlabelled networks never seen in training (relative to --unseen-root); mostly benign
DEFAULT_UNSEEN: dict[str, tuple[str, ...]] = {
    "Shadowtrace (Windows host)": ("more/Shadowtrace/*",),
    "trickbot-playbook (AD network, 1 infected host)": ("more/trickbot-playbook/*",),
    "home/lab small logs": tuple(
        f"more/{d}/*"
        for d in (
            "EvansWJ-ZeekLogs",
            "ExercisePlatform",
            "Infomate",
            "Mini_SIEM",
            "Suman2811-nta",
            "Testbed-Virtual",
            "YasmineAlii-Threat-Detection",
            "brologr",
            "broparser",
            "cchostak-zeek",
            "learning-clojure",
            "usoop-CS_code",
            "zeek-intrusion-project",
        )
    ),
    "zeek7_real": ("zeek7_real/*conn*.log", "zeek7_real/rotated/*.log"),
    "zat_tsv": ("zat_tsv/conn*.log",),
    # not benign-dominated: reported apart, not a false-alarm proxy
    "[malware exercises] apt-investigation, Dataleak, SPearPhishing, infectedPCAP": (
        "more/apt-investigation/*",
        "more/Dataleak_detector/*",
        "more/SPearPhishing/*",
        "more/infectedPCAP/*",
    ),
    "[Internet-facing sensor, mostly scans] rita missing_host": ("more/rita/*missing_host*",),
}


@dataclass
class Capture:
    """One labelled file: features, labels and provenance."""

    name: str
    path: str
    sha256: str
    X: np.ndarray
    y: np.ndarray  # 1 = malicious
    detail: np.ndarray  # detailed label (str)
    n_background: int


def _default_reader(path: str) -> pd.DataFrame:
    from zeek_ml.sources.files import read_frames

    return read_frames([path])


def capture_name(path: str) -> str:
    """Capture name from a file name (strip .gz/.log/.labeled suffixes)."""
    base, prev = os.path.basename(path), None
    while base != prev:
        prev = base
        for suffix in (".gz", ".labeled", ".log", ".conn", "-conn"):
            base = base.removesuffix(suffix)
    return base


def load_capture(path: str, reader: Callable[[str], pd.DataFrame] = _default_reader) -> Capture:
    """Read a labelled conn.log, drop Background rows, compute features."""
    frame = reader(path)
    label = frame["label"].astype("str").str.strip().str.lower()
    detail_col = "detailedlabel" if "detailedlabel" in frame.columns else "detailed-label"
    keep = label.isin(["benign", "malicious"]).to_numpy()
    kept = frame.loc[keep].reset_index(drop=True)
    detail = (
        kept[detail_col].astype("str").fillna("-").to_numpy()
        if detail_col in kept.columns
        else np.full(len(kept), "-", dtype=object)
    )
    return Capture(
        name=capture_name(path),
        path=path,
        sha256=sha256_file(path),
        X=compute_features(kept),
        y=(label[keep] == "malicious").to_numpy().astype(np.float32),
        detail=np.asarray(detail, dtype=object),
        n_background=int((~keep).sum()),
    )


def choose_threshold(captures: Sequence[Capture], scores: Sequence[np.ndarray], max_fpr: float) -> float:
    """Lowest threshold whose benign FPR is <= max_fpr on EVERY validation capture.

    Conservative on purpose (a pooled criterion let the small IoT honeypot reach 9.5 %
    FPR and tripled the flag rate on unseen networks). Clamped to [0.5, 0.999].
    """
    th = 0.5
    for c, s in zip(captures, scores, strict=True):
        benign = np.sort(s[c.y == 0])
        if len(benign) == 0:
            continue
        k = int(np.floor(max_fpr * len(benign)))  # benign rows allowed at or above the threshold
        cut = benign[len(benign) - k - 1]
        th = max(th, float(np.nextafter(np.float32(cut), np.float32(np.inf))))
    return float(min(th, 0.999))


OPERATING_POINTS = (0.5, 0.9, 0.99)


def sample_weights(caps: Sequence[Capture], ext_attack_weight: float = 1.0) -> np.ndarray:
    """Per-row weights: group (capture, class) weight grows as sqrt(size); classes equal.

    ``ext_attack_weight`` scales CTU ``External-Attack-to-Device`` rows (unsolicited
    inbound probes) to limit the "unanswered = malicious" shortcut.
    """
    ws = []
    for c in caps:
        w = np.zeros(len(c.y))
        for cls in (0, 1):
            m = c.y == cls
            if m.any():
                w[m] = 1.0 / np.sqrt(m.sum())
        w[c.detail == "External-Attack-to-Device"] *= ext_attack_weight
        ws.append(w)
    w = np.concatenate(ws)
    y = np.concatenate([c.y for c in caps])
    for cls in (0, 1):
        m = y == cls
        w[m] *= 0.5 * len(y) / w[m].sum()
    return w.astype(np.float32)


#: attack family of a detailed label (first matching rule); benign rows have none
FAMILY_RULES: tuple[tuple[str, str], ...] = (
    ("external-attack", "External-Attack"),
    ("filedownload", "FileDownload"),
    ("ddos", "DDoS"),
    ("slowloris", "DoS"),
    ("dos", "DoS"),
    ("portscan", "PortScan"),
    ("scan", "PortScan"),
    ("bruteforce", "BruteForce"),
    ("c&c", "C&C"),
    ("cc", "C&C"),
)

FAMILIES: tuple[str, ...] = ("External-Attack", "PortScan", "BruteForce", "DDoS", "DoS", "C&C", "FileDownload", "Other")


def family_of(detail: str) -> str:
    """Attack family of a detailed label (``PartOfAHorizontalPortScan`` -> PortScan, ...); ``Other`` if none."""
    d = str(detail).strip().lower()
    for key, fam in FAMILY_RULES:
        if key in d:
            return fam
    return "Other"


def resolve_unseen(root: str, groups: Mapping[str, Sequence[str]] = DEFAULT_UNSEEN) -> dict[str, list[str]]:
    """Expand DEFAULT_UNSEEN-style glob groups under ``root``."""
    out: dict[str, list[str]] = {}
    for name, pats in groups.items():
        files = sorted({f for p in pats for f in glob.glob(os.path.join(root, p)) if os.path.isfile(f)})
        if files:
            out[name] = files
    return out
