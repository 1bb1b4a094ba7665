"""Before/after tables for notice aggregation and site calibration, on the real shared data.

Usage: ``python bench/notice_calibration.py [--model models/conn-cnn-v2.onnx] [--data ../shared/data]``
(default: the CLI's default model, ``zeek_ml.cli.DEFAULT_MODEL``)

Table 1, per site (real benign-ish logs of networks no training file comes from): calibrate on
the first part of the site's logs (``zeek-ml calibrate ... --until SPLIT``), then count notices
per 1,000 connections on the held-back rest: one notice per flagged connection (the old
writer, ``--no-aggregate``), aggregated incidents without a profile, and with the profile.

Table 2, labelled attack captures: recall (share of malicious connections that a written
notice covers) with the model's threshold alone and with each site's profile applied.
Prints both tables as Markdown.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zeek_ml.cli import DEFAULT_MODEL  # noqa: E402
from zeek_ml.model.conn_model import load_model  # noqa: E402
from zeek_ml.model.scorer import Scorer, Verdicts  # noqa: E402
from zeek_ml.notices.profile import SiteProfile  # noqa: E402
from zeek_ml.services.calibrate import fit_profile  # noqa: E402
from zeek_ml.sinks.logs import build_notice_sink  # noqa: E402
from zeek_ml.sources.files import iter_batches  # noqa: E402

DAY = 86400.0
SITES: dict[str, tuple[str, str, str]] = {
    # name: (glob under data/, what it is, how it is split)
    "rita": ("zeek_unlabeled/more/rita/test_data__missing_host__*", "cloud sensor, 3 days of hourly archives",
             "days:1"),
    "trickbot": ("zeek_unlabeled/more/trickbot-playbook/*conn*", "AD network, 16 hosts, one infection, 8 days",
                 "days:3"),
    "shadowtrace": ("zeek_unlabeled/more/Shadowtrace/*conn*", "home Windows host, one day", "rows:0.5"),
    "lab-run2": ("zeek_labeled/lab-namespaces-2026-run2*", "lab, 18 hosts, 45 benign activities (+ attacks)",
                 "rows:0.5"),
}  # fmt: skip
ATTACKS = "zeek_labeled/*"
SMALL = "zeek_unlabeled/more"
SMALL_SKIP = {
    "rita", "trickbot-playbook", "Shadowtrace",  # the sites above
    "Dataleak_detector", "apt-investigation", "infectedPCAP", "SPearPhishing",  # malware captures, not benign
    "Log-Analyser-Hadoop",  # a header-less zeek-cut projection (needs --fields)
}  # fmt: skip


class NullWriter:
    """Counts what a sink writes; keeps nothing."""

    def __init__(self) -> None:
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> int:
        self.rows += len(frame)
        return len(frame)

    def close(self) -> None:
        pass


def null_factory(path: str, fields: object) -> NullWriter:
    return NullWriter()


def split_time(files: list[str], rule: str) -> float:
    ts = np.concatenate([b["ts"].to_numpy(dtype=float, na_value=np.nan) for b in iter_batches(files)])
    ts = ts[np.isfinite(ts)]
    kind, value = rule.split(":")
    if kind == "days":
        start = float(pd.Timestamp(np.quantile(ts, 0.001), unit="s").floor("D").timestamp())
        return start + float(value) * DAY
    return float(np.quantile(ts, float(value)))


def scored(files: list[str], model, since: float | None = None, label: bool = False) -> list[Verdicts]:
    """Score every row in log order, then keep those at or after ``since`` (and, with ``label``, the benign ones).

    The whole stream is scored, not only the kept rows: a stateful model (conn-cnn-v2's per-host
    context) scores a row from the same hosts' earlier connections, which a sensor running across
    the split (and seeing the site's attacks) would have seen too.
    """
    out = []
    scorer = Scorer(model)
    for batch in iter_batches(files):
        verdicts = scorer(batch)
        keep = np.ones(len(batch), dtype=bool)
        if since is not None:
            keep &= batch["ts"].to_numpy(dtype=float, na_value=np.nan) >= since
        if label:
            lab = next(c for c in batch.columns if c.lower() == "label")
            keep &= ~batch[lab].astype(str).str.lower().str.startswith("malicious").to_numpy()
        if keep.any():
            out.append(verdicts if keep.all() else verdicts.take(keep))
    return out


def notices(verdicts: list[Verdicts], **options) -> int:
    sink = build_notice_sink(null_factory, **options)
    for v in verdicts:
        sink.write(v)
    sink.close()
    return sink.notices


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / f"{DEFAULT_MODEL}.onnx"))
    default_data = os.environ.get("ZEEK_ML_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", default=default_data)
    parser.add_argument("--profiles", default="/tmp/zeek-ml-profiles", help="where to write the fitted profiles")
    args = parser.parse_args()
    model = load_model(args.model)
    os.makedirs(args.profiles, exist_ok=True)
    started = time.perf_counter()
    print(f"model {model.name} v{model.version} sha256 {model.sha256[:12]}…, threshold {model.threshold:.4f}\n")
    print(
        "| site | what | calibrated on | held back: conns | per connection | aggregated | + profile "
        "| + profile, medium+ |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    profiles: dict[str, SiteProfile] = {}
    for name, (pattern, what, rule) in SITES.items():
        files = sorted(glob.glob(os.path.join(args.data, pattern)))
        split = split_time(files, rule)
        profile = fit_profile(iter_batches(files), model, until=split)
        profile.save(os.path.join(args.profiles, f"{name}.json"))
        profiles[name] = profile
        # held back: benign rows only where the site is labelled (lab-run2 keeps its attacks in calibration)
        held = scored(files, model, since=split, label=name == "lab-run2")
        n = sum(len(v) for v in held)
        per_conn = notices(held, aggregate=False)
        agg = notices(held, aggregate=True)
        cal = notices(held, aggregate=True, profile=profile)
        cal_med = notices(held, aggregate=True, profile=profile, min_severity="medium")
        cal_rows = profile.fitted_on["rows"]
        print(
            f"| {name} | {what} | {cal_rows:,} conns ({rule}) | {n:,} | {1000 * per_conn / n:.2f} "
            f"| {1000 * agg / n:.2f} | **{1000 * cal / n:.2f}** | {1000 * cal_med / n:.2f} |"
        )
    # the small home/lab/VM logs: minutes each, each calibrated on its own first half, pooled
    n = per_conn = agg = cal = cal_med = cal_rows = sources = 0
    for folder in sorted(Path(args.data, SMALL).iterdir()):
        if folder.name in SMALL_SKIP or not folder.is_dir():
            continue
        files = sorted(str(f) for f in folder.iterdir())
        split = split_time(files, "rows:0.5")
        profile = fit_profile(iter_batches(files), model, until=split)
        held = scored(files, model, since=split)
        sources += 1
        cal_rows += profile.fitted_on["rows"]
        n += sum(len(v) for v in held)
        per_conn += notices(held, aggregate=False)
        agg += notices(held, aggregate=True)
        cal += notices(held, aggregate=True, profile=profile)
        cal_med += notices(held, aggregate=True, profile=profile, min_severity="medium")
    print(
        f"| {sources} small logs | home, lab VMs, servers (minutes each; pooled) | {cal_rows:,} conns (rows:0.5 each) "
        f"| {n:,} | {1000 * per_conn / n:.2f} | {1000 * agg / n:.2f} | **{1000 * cal / n:.2f}** "
        f"| {1000 * cal_med / n:.2f} |"
    )
    print(f"\nnotices per 1,000 held-back connections (lab-run2: its benign rows; small logs: {cal} notice(s))\n")

    names = ["model only", *profiles]
    print("| capture | malicious conns | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    pooled = {k: 0 for k in names}
    total = 0
    for path in sorted(glob.glob(os.path.join(args.data, ATTACKS))):
        verdicts = scored([path], model)
        frames = [v.conns for v in verdicts]
        conns = pd.concat(frames, ignore_index=True)
        lab = next(c for c in conns.columns if c.lower() == "label")
        bad = set(conns.loc[conns[lab].astype(str).str.lower().str.startswith("malicious"), "uid"].astype(str))
        if not bad:
            continue
        total += len(bad)
        cells = []
        for key in names:
            from zeek_ml.notices.incidents import IncidentSink, NoticePolicy

            sink = IncidentSink(
                null_factory, NoticePolicy(profile=None if key == "model only" else profiles[key]), track_uids=True
            )
            for v in verdicts:
                sink.write(v)
            sink.close()
            hit = len(bad & sink.reported_uids)
            pooled[key] += hit
            cells.append(f"{100 * hit / len(bad):.1f}")
        print(f"| {Path(path).name[:44]} | {len(bad):,} | " + " | ".join(cells) + " |")
    print(f"| **pooled** | {total:,} | " + " | ".join(f"**{100 * pooled[k] / total:.1f}**" for k in names) + " |")
    print("\nrecall % (malicious connections covered by a written notice), model threshold vs each site's profile")
    print(f"\n{time.perf_counter() - started:.0f} s; profiles in {args.profiles}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
