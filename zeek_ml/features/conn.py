"""Per-connection features from Zeek conn.log fields ("conn-v1").

`compute_features(frame)` maps a batch of conn records (a DataFrame with conn.log
field names, see the batch contract) to a float32 matrix of *raw* values: physical
quantities (seconds, bytes, packets, ratios), 0/1 flags and integer category codes.
Log-scaling, standardisation and one-hot encoding are not done here: they live inside
the exported ONNX graph, so the Python side and the model can never disagree on them.

The feature spec (`FeatureSpec`) is plain data, stored as JSON in the model's metadata;
`zeek_ml.model.conn_model` refuses a model whose spec differs from `FEATURE_SPEC`.

No IP addresses and no raw port numbers are used: the responder port is reduced to a
service class and the originator port to well-known/registered/ephemeral, so the model
has a chance to generalise to networks it never saw.

Everything is vectorised: string columns are factorised and the per-unique-value work
is done on the (small) set of distinct values, then gathered back with the codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from zeek_ml.features.context import TEMPORAL_FEATURES, HostContext

__all__ = [
    "CONTEXT_SPEC",
    "FEATURE_SPEC",
    "SUPPORTED_SPECS",
    "Feature",
    "FeatureSpec",
    "compute_features",
    "supported_spec",
]

#: feature kinds: how the ONNX graph pre-processes each raw column
#: "log1p": x >= 0, graph applies log1p then standardises
#: "log": x > 0 (ratios), graph applies log then standardises
#: "flag": 0/1, passed through
#: "categorical": integer code in [0, len(vocab)), graph one-hot encodes
KINDS = ("log1p", "log", "flag", "categorical")


@dataclass(frozen=True)
class Feature:
    """One raw feature column: its name, kind and (for categoricals) vocabulary."""

    name: str
    kind: str
    vocab: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain-data form (for JSON)."""
        d: dict = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            d["vocab"] = list(self.vocab)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Feature:
        """Inverse of `to_dict`."""
        return cls(name=str(d["name"]), kind=str(d["kind"]), vocab=tuple(d.get("vocab", ())))


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered list of raw feature columns, with a name and a version."""

    name: str
    version: int
    features: tuple[Feature, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        """Feature names in column order."""
        return [f.name for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def index(self, name: str) -> int:
        """Column index of a feature (ValueError if the spec has none of that name)."""
        try:
            return self._positions[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a feature of {self.name}") from None

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Name -> column, computed once (explanations look features up per row)."""
        return {f.name: i for i, f in reversed(list(enumerate(self.features)))}  # the first of a name wins

    def to_dict(self) -> dict:
        """Plain-data form."""
        return {
            "name": self.name,
            "version": self.version,
            "features": [f.to_dict() for f in self.features],
        }

    def to_json(self) -> str:
        """JSON text (stable key order)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict) -> FeatureSpec:
        """Parse `to_json` output (or the equivalent dict)."""
        d = json.loads(text) if isinstance(text, str) else text
        return cls(
            name=str(d["name"]),
            version=int(d["version"]),
            features=tuple(Feature.from_dict(f) for f in d["features"]),
        )

    def differences(self, other: FeatureSpec) -> list[str]:
        """Human-readable list of what differs between two specs (empty if equal)."""
        out: list[str] = []
        if self.name != other.name:
            out.append(f"spec name {self.name!r} != {other.name!r}")
        if self.version != other.version:
            out.append(f"spec version {self.version} != {other.version}")
        a, b = self.names, other.names
        if a != b:
            missing = [n for n in a if n not in b]
            extra = [n for n in b if n not in a]
            if missing:
                out.append(f"features missing: {missing}")
            if extra:
                out.append(f"unexpected features: {extra}")
            if not missing and not extra:
                first = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
                out.append(f"feature order differs from column {first} ({a[first]!r} vs {b[first]!r})")
        else:
            for fa, fb in zip(self.features, other.features, strict=True):
                if fa.kind != fb.kind:
                    out.append(f"feature {fa.name!r}: kind {fa.kind!r} != {fb.kind!r}")
                if fa.vocab != fb.vocab:
                    out.append(f"feature {fa.name!r}: vocabulary {list(fa.vocab)} != {list(fb.vocab)}")
        return out


# --------------------------------------------------------------------------- vocabularies

PROTO_VOCAB = ("tcp", "udp", "icmp", "other", "unset")
CONN_STATE_VOCAB = (
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
    "other", "unset",
)  # fmt: skip
SERVICE_VOCAB = (
    "dns", "http", "ssl", "ssh", "ftp", "ftp-data", "smtp", "imap", "pop3", "ntp", "dhcp",
    "snmp", "smb", "krb", "ldap", "rdp", "sip", "irc", "quic", "dtls", "other", "unset",
)  # fmt: skip
# responder port classes (well-known services grouped); ICMP "ports" are type/code
RESP_PORT_VOCAB = (
    "dns", "http", "https", "ssh", "telnet", "ftp", "mail", "netbios_smb", "ntp", "dhcp",
    "snmp_syslog", "local_discovery", "remote_desktop", "database", "directory_auth",
    "other_wellknown", "registered", "ephemeral", "icmp", "unset",
)  # fmt: skip
ORIG_PORT_VOCAB = ("wellknown", "registered", "ephemeral", "icmp", "unset")
TRISTATE_VOCAB = ("false", "true", "unknown")
HISTORY_FIRST_VOCAB = ("S", "D", "d", "A", "a", "flipped", "other_orig", "other_resp", "unset")

# history letters whose presence is a flag (upper case: originator, lower case: responder)
HISTORY_LETTERS = "SsHhAaDdFfRrCcTtWwIiQq^"

_RESP_PORT_GROUPS: dict[str, tuple[int, ...]] = {
    "dns": (53,),
    "http": (80, 8000, 8008, 8080, 8081, 8888),
    "https": (443, 8443),
    "ssh": (22,),
    "telnet": (23, 2323),
    "ftp": (20, 21),
    "mail": (25, 110, 143, 465, 587, 993, 995),
    "netbios_smb": (137, 138, 139, 445),
    "ntp": (123,),
    "dhcp": (67, 68, 546, 547),
    "snmp_syslog": (161, 162, 514),
    "local_discovery": (1900, 5353, 5355),
    "remote_desktop": (3389, 5900, 5901),
    "database": (1433, 1521, 3306, 5432, 6379, 27017),
    "directory_auth": (88, 389, 636),
}


def _resp_port_table() -> np.ndarray:
    lut = np.empty(65536, dtype=np.int8)
    lut[:1024] = RESP_PORT_VOCAB.index("other_wellknown")
    lut[1024:49152] = RESP_PORT_VOCAB.index("registered")
    lut[49152:] = RESP_PORT_VOCAB.index("ephemeral")
    for group, ports in _RESP_PORT_GROUPS.items():
        lut[list(ports)] = RESP_PORT_VOCAB.index(group)
    return lut


_RESP_PORT_LUT = _resp_port_table()

_NUMERIC: tuple[tuple[str, str], ...] = (
    ("duration", "log1p"),
    ("orig_bytes", "log1p"),
    ("resp_bytes", "log1p"),
    ("orig_pkts", "log1p"),
    ("resp_pkts", "log1p"),
    ("orig_ip_bytes", "log1p"),
    ("resp_ip_bytes", "log1p"),
    ("missed_bytes", "log1p"),
    ("orig_bytes_per_pkt", "log1p"),
    ("resp_bytes_per_pkt", "log1p"),
    ("orig_ip_overhead_per_pkt", "log1p"),
    ("resp_ip_overhead_per_pkt", "log1p"),
    ("history_len", "log1p"),
    ("history_orig_letters", "log1p"),
    ("history_resp_letters", "log1p"),
    ("resp_orig_bytes_ratio", "log"),
    ("resp_orig_pkts_ratio", "log"),
)
_FLAGS: tuple[str, ...] = (
    "duration_missing",
    "bytes_missing",
    "pkts_missing",
    "ip_bytes_missing",
    "history_missing",
    *(f"hist_{'caret' if c == '^' else ('orig_' + c if c.isupper() else 'resp_' + c)}" for c in HISTORY_LETTERS),
)
_CATEGORICAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("proto", PROTO_VOCAB),
    ("conn_state", CONN_STATE_VOCAB),
    ("service", SERVICE_VOCAB),
    ("resp_port_class", RESP_PORT_VOCAB),
    ("orig_port_class", ORIG_PORT_VOCAB),
    ("local_orig", TRISTATE_VOCAB),
    ("local_resp", TRISTATE_VOCAB),
    ("history_first", HISTORY_FIRST_VOCAB),
)

FEATURE_SPEC = FeatureSpec(
    name="conn-v1",
    version=1,
    features=(
        *(Feature(n, k) for n, k in _NUMERIC),
        *(Feature(n, "flag") for n in _FLAGS),
        *(Feature(n, "categorical", v) for n, v in _CATEGORICAL),
    ),
)

#: "conn-v2": conn-v1 plus per-host temporal context (zeek_ml.features.context.HostContext with its
#: default parameters: last 32 connections per host, 60 s window, 1 h expiry)
CONTEXT_SPEC = FeatureSpec(
    name="conn-v2",
    version=2,
    features=(*FEATURE_SPEC.features, *(Feature(n, k) for n, k in TEMPORAL_FEATURES)),
)

#: every spec this code can compute, by (name, version)
SUPPORTED_SPECS: dict[tuple[str, int], FeatureSpec] = {
    (FEATURE_SPEC.name, FEATURE_SPEC.version): FEATURE_SPEC,
    (CONTEXT_SPEC.name, CONTEXT_SPEC.version): CONTEXT_SPEC,
}


def supported_spec(spec: FeatureSpec) -> FeatureSpec:
    """The code's spec with ``spec``'s name and version (conn-v1 when unknown), for comparison."""
    return SUPPORTED_SPECS.get((spec.name, spec.version), FEATURE_SPEC)


#: conn fields a Suricata eve ``flow`` record cannot supply, and how zeek_ml.sources.eve fills them
#: ("unset": null, so the feature takes its missing/unknown value; "estimated": derived, not
#: measured). The features built on them are only as good as this says (README.md, "Suricata").
SURICATA_UNSUPPLIED: dict[str, str] = {
    "orig_bytes": "estimated: IP bytes less minimal IP+TCP/UDP/ICMP headers per packet; 0 for a TCP "
    "direction without PSH (eve has no sequence-number payload count; TCP options count as payload)",
    "resp_bytes": "estimated, as orig_bytes",
    "orig_ip_bytes": "estimated: eve counts whole frames; the link header (14 bytes, +4 per VLAN tag) is subtracted",
    "resp_ip_bytes": "estimated, as orig_ip_bytes",
    "history": "approximated: eve keeps the union of TCP flags per direction, not their order or repeats; "
    "D/d only where a direction pushed data; null for TCP without a tcp object and for ICMP",
    "conn_state": "approximated from the per-direction TCP flags (null for TCP without a tcp object)",
    "missed_bytes": "unset: eve has gap flags (tcp.ts_gap/tc_gap), not byte counts",
    "local_orig": "unset: Suricata has no Site::local_nets",
    "local_resp": "unset: Suricata has no Site::local_nets",
    "tunnel_parents": "unset",
}


# --------------------------------------------------------------------------- helpers


def _num(frame: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (0 where unset) and a missing mask; absent column = all missing."""
    n = len(frame)
    if col not in frame.columns:
        return np.zeros(n), np.ones(n, dtype=bool)
    s = frame[col]
    v = pd.to_numeric(s, errors="coerce") if s.dtype == object else s
    arr = np.array(v.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64, copy=True)
    miss = np.isnan(arr)
    arr[miss] = 0.0
    return arr, miss


def _codes(frame: pd.DataFrame, col: str, mapper) -> np.ndarray:
    """Integer codes for a string column: factorise, map the distinct values, gather."""
    n = len(frame)
    if col not in frame.columns:
        return mapper(np.array([], dtype=object), n_missing=n)
    codes, uniques = pd.factorize(frame[col], use_na_sentinel=True)
    table = mapper(np.asarray(uniques, dtype=object))
    unset = mapper.unset_code
    out = np.full(n, unset, dtype=np.int64)
    ok = codes >= 0
    out[ok] = table[codes[ok]]
    return out


class _VocabMapper:
    """Map distinct string values to vocab codes (exact match, else 'other')."""

    def __init__(self, vocab: tuple[str, ...], normalise=None) -> None:
        self.vocab = vocab
        self.index = {v: i for i, v in enumerate(vocab)}
        self.other_code = self.index["other"]
        self.unset_code = self.index["unset"]
        self.normalise = normalise

    def __call__(self, uniques: np.ndarray, n_missing: int | None = None) -> np.ndarray:
        if n_missing is not None:
            return np.full(n_missing, self.unset_code, dtype=np.int64)
        out = np.empty(len(uniques), dtype=np.int64)
        for i, u in enumerate(uniques):  # over distinct values only (a handful)
            key = str(u).strip().lower()
            if self.normalise is not None:
                key = self.normalise(key)
            out[i] = self.index.get(key, self.other_code) if key not in ("", "-") else self.unset_code
        return out


def _normalise_service(s: str) -> str:
    # Zeek joins several analyser names with "," (e.g. "gssapi,ntlm,smb"); a leading "-"
    # marks a failed analyser (Zeek 6+: "-ssl"), which we treat as "other".
    parts = [p for p in s.split(",") if p]
    if not parts:
        return ""
    for p in parts:
        if p.startswith("smb"):
            return "smb"
        if p in ("krb", "krb_tcp"):
            return "krb"
    p = parts[-1] if parts[-1] in SERVICE_VOCAB else parts[0]
    return "other" if p.startswith("-") else p


_PROTO = _VocabMapper(PROTO_VOCAB)
_CONN_STATE = _VocabMapper(tuple(v.lower() for v in CONN_STATE_VOCAB))
_SERVICE = _VocabMapper(SERVICE_VOCAB, _normalise_service)


def _history_table(uniques: np.ndarray) -> np.ndarray:
    """Per distinct history string: letter flags, lengths and first-letter code.

    Returns float64 array (U, len(HISTORY_LETTERS) + 4): flags..., len, n_orig, n_resp, first.
    """
    u = len(uniques)
    nl = len(HISTORY_LETTERS)
    out = np.zeros((u, nl + 4), dtype=np.float64)
    if u == 0:
        return out
    b = np.array([str(x).encode("ascii", "replace") for x in uniques], dtype="S")
    width = b.dtype.itemsize
    mat = np.frombuffer(b.tobytes(), dtype=np.uint8).reshape(u, width)
    letters = np.frombuffer(HISTORY_LETTERS.encode(), dtype=np.uint8)
    out[:, :nl] = (mat[:, :, None] == letters[None, None, :]).any(axis=1)
    nonzero = mat != 0
    upper = (mat >= ord("A")) & (mat <= ord("Z"))
    lower = (mat >= ord("a")) & (mat <= ord("z"))
    out[:, nl] = nonzero.sum(1)
    out[:, nl + 1] = upper.sum(1)
    out[:, nl + 2] = lower.sum(1)
    # first letter (after a leading '^', which means Zeek flipped the direction)
    first = mat[:, 0]
    flipped = first == ord("^")
    first_eff = np.where(flipped, mat[:, 1] if width > 1 else 0, first)
    fv = HISTORY_FIRST_VOCAB
    code = np.where((first_eff >= ord("A")) & (first_eff <= ord("Z")), fv.index("other_orig"), fv.index("other_resp"))
    for ch in ("S", "D", "d", "A", "a"):
        code = np.where(first_eff == ord(ch), fv.index(ch), code)
    code = np.where(flipped, fv.index("flipped"), code)
    code = np.where(first == 0, fv.index("unset"), code)
    out[:, nl + 3] = code
    return out


@dataclass(frozen=True)
class _Gather:
    """A column to be gathered lazily from a per-distinct-value table."""

    table: np.ndarray
    codes: np.ndarray


def _tristate(frame: pd.DataFrame, col: str) -> np.ndarray:
    n = len(frame)
    if col not in frame.columns:
        return np.full(n, 2, dtype=np.int64)
    s = frame[col]
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        s = s.map({"T": True, "F": False, "true": True, "false": False, True: True, False: False})
    arr = s.astype("boolean")
    vals = arr.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full(n, 2, dtype=np.int64)
    out[vals == 0] = 0
    out[vals == 1] = 1
    return out


# --------------------------------------------------------------------------- main entry


def compute_features(
    frame: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC, context: HostContext | None = None
) -> np.ndarray:
    """Raw feature matrix float32 (N, F) for a batch of conn records, in `spec` order.

    Unset numeric fields become 0 with an explicit `*_missing` flag; categoricals are
    integer codes into the spec's vocabularies ("unset"/"other"/"unknown" included).
    For conn-v2 the temporal columns come from ``context`` (updated with the batch, rows
    in log order); without one, a fresh context sees the batch alone (offline, one file).
    Raises ValueError if `spec` is not a spec this code implements.
    """
    code_spec = supported_spec(spec)
    diffs = code_spec.differences(spec)
    if diffs:
        raise ValueError("compute_features implements " + code_spec.name + ": " + "; ".join(diffs))
    if code_spec is CONTEXT_SPEC:
        nb = len(FEATURE_SPEC)
        out = np.empty((len(frame), len(CONTEXT_SPEC)), dtype=np.float32)
        _per_connection(frame, FEATURE_SPEC, out[:, :nb])
        temporal = (context if context is not None else HostContext()).update(frame)
        out[:, nb:] = temporal.to_numpy()  # float64 -> float32 as to_numpy(dtype=float32) rounds
        return out
    out = np.empty((len(frame), len(spec)), dtype=np.float32)
    _per_connection(frame, spec, out)
    return out


def _per_connection(frame: pd.DataFrame, spec: FeatureSpec, into: np.ndarray) -> None:
    """The per-connection columns of ``spec`` (conn-v1's) written into ``into`` [N, F] (a view)."""
    n = len(frame)
    cols: dict[str, np.ndarray] = {}

    duration, dur_miss = _num(frame, "duration")
    ob, ob_m = _num(frame, "orig_bytes")
    rb, rb_m = _num(frame, "resp_bytes")
    op, op_m = _num(frame, "orig_pkts")
    rp, rp_m = _num(frame, "resp_pkts")
    oib, oib_m = _num(frame, "orig_ip_bytes")
    rib, rib_m = _num(frame, "resp_ip_bytes")
    mb, _ = _num(frame, "missed_bytes")
    for a in (duration, ob, rb, op, rp, oib, rib, mb):
        np.maximum(a, 0.0, out=a)

    cols["duration"] = duration
    cols["orig_bytes"], cols["resp_bytes"] = ob, rb
    cols["orig_pkts"], cols["resp_pkts"] = op, rp
    cols["orig_ip_bytes"], cols["resp_ip_bytes"] = oib, rib
    cols["missed_bytes"] = mb
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["orig_bytes_per_pkt"] = np.where(op > 0, ob / np.maximum(op, 1), 0.0)
        cols["resp_bytes_per_pkt"] = np.where(rp > 0, rb / np.maximum(rp, 1), 0.0)
        cols["orig_ip_overhead_per_pkt"] = np.where(op > 0, np.maximum(oib - ob, 0) / np.maximum(op, 1), 0.0)
        cols["resp_ip_overhead_per_pkt"] = np.where(rp > 0, np.maximum(rib - rb, 0) / np.maximum(rp, 1), 0.0)
    cols["resp_orig_bytes_ratio"] = (rb + 1.0) / (ob + 1.0)
    cols["resp_orig_pkts_ratio"] = (rp + 1.0) / (op + 1.0)

    cols["duration_missing"] = dur_miss
    cols["bytes_missing"] = ob_m | rb_m
    cols["pkts_missing"] = op_m | rp_m
    cols["ip_bytes_missing"] = oib_m | rib_m

    # history: factorise, compute on distinct values, gather one column at a time
    nl = len(HISTORY_LETTERS)
    unset_row = np.zeros((1, nl + 4))
    unset_row[0, nl + 3] = HISTORY_FIRST_VOCAB.index("unset")
    if "history" in frame.columns:
        hcodes, huniq = pd.factorize(frame["history"], use_na_sentinel=True)
        table = np.vstack([_history_table(np.asarray(huniq, dtype=object)), unset_row])
        hcodes = np.where(hcodes < 0, len(table) - 1, hcodes)  # NA -> unset row
        hist_missing = hcodes == len(table) - 1
    else:
        table = unset_row
        hcodes = np.zeros(n, dtype=np.intp)
        hist_missing = np.ones(n, dtype=bool)
    table_t = np.ascontiguousarray(table.T.astype(np.float32))
    cols["history_missing"] = hist_missing
    hist_cols = [*_FLAGS[5:], "history_len", "history_orig_letters", "history_resp_letters", "history_first"]
    for i, name in enumerate(hist_cols):
        cols[name] = _Gather(table_t[i], hcodes)

    # categoricals
    proto = _codes(frame, "proto", _PROTO)
    cols["proto"] = proto
    cols["conn_state"] = _codes(frame, "conn_state", _CONN_STATE)
    cols["service"] = _codes(frame, "service", _SERVICE)

    is_icmp = proto == PROTO_VOCAB.index("icmp")
    rport, rport_m = _num(frame, "id.resp_p")
    rport_i = np.clip(rport, 0, 65535).astype(np.int64)
    rpc = _RESP_PORT_LUT[rport_i].astype(np.int64)
    rpc[is_icmp] = RESP_PORT_VOCAB.index("icmp")
    rpc[rport_m & ~is_icmp] = RESP_PORT_VOCAB.index("unset")
    cols["resp_port_class"] = rpc
    oport, oport_m = _num(frame, "id.orig_p")
    opc = np.where(oport < 1024, 0, np.where(oport < 49152, 1, 2)).astype(np.int64)
    opc[is_icmp] = ORIG_PORT_VOCAB.index("icmp")
    opc[oport_m & ~is_icmp] = ORIG_PORT_VOCAB.index("unset")
    cols["orig_port_class"] = opc
    cols["local_orig"] = _tristate(frame, "local_orig")
    cols["local_resp"] = _tristate(frame, "local_resp")

    # fill feature-major (contiguous writes), then one transposing copy into the output
    out_t = np.empty((len(spec), n), dtype=np.float32)
    for j, f in enumerate(spec.features):
        v = cols[f.name]
        out_t[j] = v.table[v.codes] if isinstance(v, _Gather) else v
    into[:] = out_t.T
