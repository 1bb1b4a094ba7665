"""How the shipped model behaves on Suricata eve.json flows (the figures in README.md, "Suricata").

    python bench/suricata_eval.py [--data ../shared/data] [--model models/conn-cnn-v2.onnx] [--json OUT]

The model defaults to the CLI's (``zeek_ml.cli.DEFAULT_MODEL``). Each file (each variant of it) is
scored as its own stream with a fresh ``Scorer``, as ``zeek-ml score FILE`` does: a stateful model
(conn-cnn-v2's per-host context) must not carry one file's hosts, or an earlier pass over the same
flows, into the next.

1. Per eve file of DATA/suricata_eve: flow events, other events (ignored), share of flows at or
   above the model's threshold, what they are (proto/conn_state/service), eve alerts written with
   the default aggregation (incidents) and per connection.
2. Sensitivity: the share flagged when the mapping's estimates change (payload bytes unset, TCP
   headers of 32 bytes as with timestamps, link header not subtracted), so a reader sees how much
   the verdicts rest on what eve cannot supply.
3. eve vs Zeek on comparable traffic (no capture exists here as both a conn.log and an eve.json,
   and neither Zeek nor Suricata can be installed to make a pair): malware-traffic-analysis.net
   exercises (eve: MSSIS-suricata, suricata_report_generator; Zeek: trickbot-playbook,
   apt-investigation) and Internet-facing servers (eve: MAGNC-suricata_data_training; Zeek: rita's
   cloud sensor): proto and conn_state mix, per-packet header overhead, durations, flagged share.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zeek_ml.cli import DEFAULT_MODEL  # noqa: E402
from zeek_ml.model.conn_model import load_model  # noqa: E402
from zeek_ml.model.scorer import Scorer, Verdicts  # noqa: E402
from zeek_ml.notices.site import LocalNets  # noqa: E402
from zeek_ml.sinks.eve import EveAlertSink  # noqa: E402
from zeek_ml.sources.files import read_frames  # noqa: E402
from zeek_ml.sources.reading import ReadStats, RejectLog  # noqa: E402


def _read(paths: list[Path] | Path, local_nets: Any = None) -> tuple[pd.DataFrame, ReadStats]:
    stats = ReadStats()
    frame = read_frames([str(p) for p in (paths if isinstance(paths, list) else [paths])], stats=stats,
                        rejects=RejectLog(), local_nets=local_nets)  # fmt: skip
    return frame, stats


def _score(model: Any, frame: pd.DataFrame) -> Verdicts:
    """One stream: a fresh scorer (host context) for each file or variant."""
    return Scorer(model)(frame)


def _files(data: Path) -> list[Path]:
    return sorted(p for p in (data / "suricata_eve").rglob("*") if p.is_file() and "README" not in p.name)


def _alerts(v: Verdicts, aggregate: bool, tmp: Path) -> int:
    sink = EveAlertSink(tmp, aggregate=aggregate)
    if len(v):
        sink.write(v)
    sink.close()
    return sum(1 for _ in tmp.open())


def per_file(data: Path, model: Any, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for path in _files(data):
        frame, stats = _read(path)
        row: dict[str, Any] = {
            "file": str(path.relative_to(data / "suricata_eve")),
            "flows": len(frame),
            "other_events": stats.ignored_events,
            "rejected": stats.rejected,
        }
        if len(frame):
            v = _score(model, frame)
            flagged = frame[v.flagged]
            row["flagged"] = int(v.flagged.sum())
            row["flagged_share"] = round(float(v.flagged.mean()), 4)
            kinds = (
                flagged["proto"].astype(str)
                + " "
                + flagged["conn_state"].astype(object).fillna("-").astype(str)
                + " "
                + flagged["service"].astype(object).fillna("-").astype(str)
            )
            row["flagged_kinds"] = kinds.value_counts().head(3).to_dict()
            if v.family is not None:
                fam = pd.Series(v.family[v.flagged]).astype(object).fillna("-").astype(str)
                row["flagged_families"] = fam.value_counts().to_dict()
            alerted = frame["suricata.alerted"].fillna(False).to_numpy(dtype=bool)
            row["suricata_alerted_flows"] = int(alerted.sum())
            row["flagged_and_alerted"] = int((alerted & v.flagged).sum())
            row["alerts_incidents"] = _alerts(v, True, tmp)
            row["alerts_per_conn"] = _alerts(v, False, tmp)
            local, _ = _read(path, local_nets=LocalNets())
            row["flagged_share_local_nets"] = round(float(_score(model, local).flagged.mean()), 4)
        rows.append(row)
    return rows


def _variants(base: pd.DataFrame, local: pd.DataFrame) -> dict[str, pd.DataFrame]:
    tcp = base["proto"] == "tcp"
    no_bytes = base.assign(orig_bytes=pd.NA, resp_bytes=pd.NA).astype({"orig_bytes": "Int64", "resp_bytes": "Int64"})
    ts_opts = base.copy()
    for side in ("orig", "resp"):
        cut = (ts_opts[f"{side}_bytes"] - 12 * ts_opts[f"{side}_pkts"]).clip(lower=0)
        ts_opts[f"{side}_bytes"] = ts_opts[f"{side}_bytes"].where(~tcp, cut)
    raw_frames = base.copy()
    for side, key in (("orig", "toserver"), ("resp", "toclient")):
        raw_frames[f"{side}_ip_bytes"] = raw_frames[f"suricata.bytes_{key}"]
    return {
        "as_mapped": base,
        "payload_bytes_unset": no_bytes,
        "tcp_header_32_bytes": ts_opts,
        "link_header_not_subtracted": raw_frames,
        "local_nets_private_ranges": local,
        "history_unset": base.assign(history=pd.Series(pd.NA, index=base.index, dtype=base["history"].dtype)),
    }


def sensitivity(data: Path, model: Any) -> dict[str, float]:
    """Share of all flows flagged per variant of the mapping; each file scored as its own stream."""
    flows = 0
    flagged: dict[str, int] = {}
    for path in _files(data):
        base, _ = _read(path)
        if not len(base):
            continue
        flows += len(base)
        local, _ = _read(path, local_nets=LocalNets())
        for name, frame in _variants(base, local).items():
            flagged[name] = flagged.get(name, 0) + int(_score(model, frame).flagged.sum())
    return {"flows": flows, **{name: round(n / max(flows, 1), 4) for name, n in flagged.items()}}


def _profile(frame: pd.DataFrame, model: Any) -> dict[str, Any]:
    v = _score(model, frame)
    tcp_sf = frame[(frame["proto"] == "tcp") & (frame["conn_state"] == "SF") & (frame["orig_pkts"] > 0)]
    overhead = (tcp_sf["orig_ip_bytes"] - tcp_sf["orig_bytes"]) / tcp_sf["orig_pkts"]
    states = frame["conn_state"].astype(object).fillna("-").value_counts(normalize=True).head(5).round(3)
    return {
        "flows": len(frame),
        "proto": frame["proto"].astype(str).value_counts(normalize=True).round(3).to_dict(),
        "conn_state_top5": states.to_dict(),
        "tcp_sf_header_bytes_per_pkt_median": round(float(np.nanmedian(overhead.astype(float))), 1)
        if len(tcp_sf)
        else None,
        "duration_median_s": round(float(np.nanmedian(frame["duration"].astype(float))), 3),
        "flagged_share": round(float(v.flagged.mean()), 4),
        "flagged_share_tcp_sf": round(float(v.flagged[tcp_sf.index.to_numpy()].mean()), 4) if len(tcp_sf) else None,
    }


def compare(data: Path, model: Any) -> dict[str, dict[str, Any]]:
    eve = data / "suricata_eve"
    zeek = data / "zeek_unlabeled" / "more"
    groups = {
        "malware-traffic-analysis, eve": [
            eve / "MSSIS-suricata/data__out.json.gz",
            eve / "suricata_report_generator/data__eve.json.gz",
            eve / "suricata_report_generator/data__eve_2023-10-31-IcedID-infection-traffic.json.gz",
        ],
        "malware-traffic-analysis, Zeek": [zeek / "trickbot-playbook", zeek / "apt-investigation"],
        "Internet-facing server, eve": [eve / "MAGNC-suricata_data_training/eve.json.gz"],
        "Internet-facing server, Zeek": sorted((zeek / "rita").glob("test_data__missing_host__*")),
    }
    out = {}
    for name, paths in groups.items():
        frame, _ = _read(paths)
        out[name] = _profile(frame.reset_index(drop=True), model)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / f"{DEFAULT_MODEL}.onnx")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = per_file(args.data, model, Path(tmp) / "alerts.json")
    report = {
        "model": f"{model.name} v{model.version}",
        "threshold": round(float(model.threshold), 4),
        "families": list(getattr(model, "families", None) or []),
        "files": files,
        "sensitivity": sensitivity(args.data, model),
        "compare": compare(args.data, model),
    }
    print(f"model {report['model']}, threshold {report['threshold']}, families: {report['families'] or 'none'}")
    print(
        "| file | flows | other events | flagged | share | share, --local-nets private | eve alerts (incidents / "
        "per conn) | flows Suricata alerted on (of them flagged) | flagged most | families |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in files:
        kinds = ", ".join(f"{k} ({v})" for k, v in r.get("flagged_kinds", {}).items())
        families = ", ".join(f"{k} ({v})" for k, v in r.get("flagged_families", {}).items())
        alerts = f"{r['alerts_incidents']} / {r['alerts_per_conn']}" if "alerts_incidents" in r else "0 / 0"
        share = f"{100 * r['flagged_share']:.1f} %" if "flagged_share" in r else "-"
        local = f"{100 * r['flagged_share_local_nets']:.1f} %" if "flagged_share" in r else "-"
        print(
            f"| {r['file']} | {r['flows']:,} | {r['other_events']:,} | {r.get('flagged', 0):,} | {share} | {local} "
            f"| {alerts} | {r.get('suricata_alerted_flows', 0)} ({r.get('flagged_and_alerted', 0)}) "
            f"| {kinds} | {families} |"
        )
    flows = sum(r["flows"] for r in files)
    flagged = sum(r.get("flagged", 0) for r in files)
    print(f"| **all** | {flows:,} | {sum(r['other_events'] for r in files):,} | {flagged:,} "
          f"| {100 * flagged / max(flows, 1):.1f} % | {100 * report['sensitivity']['local_nets_private_ranges']:.1f} % "
          f"| | {sum(r.get('suricata_alerted_flows', 0) for r in files)} "
          f"({sum(r.get('flagged_and_alerted', 0) for r in files)}) | | |")  # fmt: skip
    print("\nsensitivity (share of all flows flagged):", json.dumps(report["sensitivity"]))
    print("\neve vs Zeek, comparable traffic:")
    for name, prof in report["compare"].items():
        print(f"- {name}: {json.dumps(prof)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
