#!/usr/bin/env python3
"""What a checkpoint of the per-host context costs with many hosts: JSON against arrays.

Builds a host context from synthetic connections (``--hosts`` distinct originators, ``--per-host``
connections each, to 5,000 responders), then saves and loads it both ways, as ``zeek-ml watch``
did (``state()`` as JSON) and does (``snapshot()`` as an ``.npz`` beside the checkpoint), and checks
that both load back to the same state. Wall seconds, best of ``--repeat``.

    python bench/bench_checkpoint.py --hosts 100000
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
import pandas as pd

from zeek_ml.features.conn import CONTEXT_SPEC, compute_features
from zeek_ml.features.context import HostContext
from zeek_ml.sources.frame import conn_frame


def connections(hosts: int, per_host: int, seed: int = 0) -> pd.DataFrame:
    """``hosts`` originators, ``per_host`` connections each, round robin, 1 ms apart."""
    rng = np.random.default_rng(seed)
    n = hosts * per_host
    origs = np.array([f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(hosts)], dtype=object)
    resp = rng.integers(0, 5000, n)
    return conn_frame(
        pd.DataFrame(
            {
                "ts": 1.7e9 + np.arange(n) * 0.001,
                "uid": [f"C{i}" for i in range(n)],
                "id.orig_h": origs[np.arange(n) % hosts],
                "id.orig_p": rng.integers(1024, 65535, n),
                "id.resp_h": [f"192.168.{(i >> 8) & 255}.{i & 255}" for i in resp.tolist()],
                "id.resp_p": rng.choice([22, 80, 443, 3389], n),
                "proto": "tcp",
                "duration": 0.1,
                "orig_bytes": 100,
                "resp_bytes": 200,
                "conn_state": "SF",
                "history": "ShADadFf",
                "missed_bytes": 0,
                "orig_pkts": 5,
                "orig_ip_bytes": 300,
                "resp_pkts": 5,
                "resp_ip_bytes": 400,
            }
        )
    )


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=100_000)
    p.add_argument("--per-host", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    ctx = HostContext()
    compute_features(connections(a.hosts, a.per_host), CONTEXT_SPEC, ctx)

    def save_json() -> bytes:
        return json.dumps(ctx.state(), separators=(",", ":"), sort_keys=True).encode()

    def save_arrays() -> tuple[dict, bytes]:
        meta, arrays = ctx.snapshot()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return meta, buf.getvalue()

    def load_json() -> HostContext:
        return HostContext.from_state(json.loads(text))

    def load_arrays() -> HostContext:
        c = HostContext()
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            c.restore_snapshot(meta, {k: z[k] for k in z.files})
        return c

    t_sj, text = best(save_json, a.repeat)
    t_sa, (meta, blob) = best(save_arrays, a.repeat)
    t_lj, by_json = best(load_json, a.repeat)
    t_la, by_arrays = best(load_arrays, a.repeat)
    assert by_json.state() == by_arrays.state() == ctx.state(), "the two checkpoints load back differently"
    hosts = len(ctx.state()["orig"]) + len(ctx.state()["resp"])
    print(f"{hosts:,} hosts ({a.hosts:,} originators x {a.per_host} connections), best of {a.repeat}, wall s")
    print("| checkpoint | save s | load s | bytes |")
    print("|---|---:|---:|---:|")
    print(f"| JSON (state()) | {t_sj:.3f} | {t_lj:.3f} | {len(text):,} |")
    print(f"| arrays (snapshot(), .npz) | {t_sa:.3f} | {t_la:.3f} | {len(blob):,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
