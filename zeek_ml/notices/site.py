"""Where a connection goes relative to the site, and how much a notice about it matters.

Direction comes from Zeek's ``local_orig``/``local_resp`` where the log has them, else from
the site's local networks (:class:`LocalNets`, like Zeek's ``Site::local_nets``). With neither,
the private address space (RFC 1918, CGNAT, link-local, IPv6 ULA and link-local, loopback) is
taken as local, as ``Site::private_address_space`` would be.

Severity is a rule over an incident (one or many connections, see :mod:`zeek_ml.notices.incidents`):

- ``low``: the originator is outside the site (unsolicited inbound probing of an
  Internet-facing host, or traffic between two outside hosts the sensor happens to see);
- ``high``: a local host is the originator and it talks like C&C, scans or floods: the model
  names such a family, or the incident reaches many hosts or ports (scan) or many connections
  (flood) within the suppression interval;
- ``medium``: any other flagged traffic from a local host.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zeek_ml.sources.local_nets import LocalNets

DIRECTIONS: tuple[str, ...] = ("inbound", "outbound", "internal", "external")
"""``inbound``: outside -> local; ``outbound``: local -> outside; ``internal``: local -> local
(multicast and broadcast from a local host included); ``external``: outside -> outside."""

SEVERITIES: tuple[str, ...] = ("low", "medium", "high")


SCAN_MIN_HOSTS = 10
"""A local originator reaching this many distinct hosts within one interval scans (high)."""
SCAN_MIN_PORTS = 10
"""... or this many distinct responder ports (a vertical scan)."""
FLOOD_MIN_CONNS = 500
"""... or opens this many flagged connections (a flood, a brute force)."""
HIGH_FAMILY_WORDS: tuple[str, ...] = ("c&c", "cnc", "c2", "command", "scan", "ddos", "dos", "flood", "brute")
"""A family name containing one of these words makes a local originator's notice high."""


def severity_rank(name: str) -> int:
    """0 for low, 1 for medium, 2 for high (ValueError otherwise)."""
    try:
        return SEVERITIES.index(name)
    except ValueError:
        raise ValueError(f"unknown severity {name!r} (one of {', '.join(SEVERITIES)})") from None


def texts(values: pd.Series) -> np.ndarray:
    """Each value as text, ``-`` where unset (object array): an address, a port, a state as a key.

    Typed columns are converted one distinct value at a time (``pd.factorize``), the same text
    for the same value, without a Python object per row from Arrow-backed columns.
    """
    if values.dtype == object:
        return values.astype(object).where(values.notna(), "-").astype(str).to_numpy()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = pd.Series(uniques, dtype=values.dtype).astype(object).astype(str).to_numpy()
    return np.append(table, "-")[codes]


def arrow_texts(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """:func:`texts` as an Arrow string array: Arrow-backed text and integer columns converted in Arrow
    (no Python string per row), any other column through :func:`texts`."""
    if values.dtype != object:
        arr = pa.array(values)  # an Arrow-backed column as it is; Int64 with its nulls
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_integer(arr.type):
            return pc.fill_null(pc.cast(arr, pa.string()), "-")
    return pa.array(texts(values), pa.string())


def _flag(conns: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(value, known) of a Zeek bool column such as ``local_orig``."""
    if name not in conns.columns:
        n = len(conns)
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    col = conns[name]
    known = col.notna().to_numpy(copy=True)
    if pd.api.types.is_bool_dtype(col.dtype):  # Zeek's bool column as read: no Python object per row
        return col.to_numpy(dtype=bool, na_value=False, copy=True), known
    value = col.astype(object).where(col.notna(), False).astype(bool).to_numpy(copy=True)
    return value, known


def directions(conns: pd.DataFrame, local_nets: LocalNets | None = None, *, prefer_zeek: bool = True) -> np.ndarray:
    """The direction of each connection (object array of :data:`DIRECTIONS`).

    Zeek's ``local_orig``/``local_resp`` decide where set (``prefer_zeek``), the local nets
    elsewhere. A local host sending to multicast or broadcast is ``internal``.
    """
    nets = local_nets or LocalNets()
    orig_local, orig_known = _flag(conns, "local_orig")
    resp_local, resp_known = _flag(conns, "local_resp")
    if not prefer_zeek:
        orig_known[:] = False
        resp_known[:] = False
    orig = orig_local.copy()
    unknown = np.flatnonzero(~orig_known)  # the local nets decide only where Zeek did not (no parsing else)
    if len(unknown):
        orig[unknown] = nets.classify(conns["id.orig_h"].iloc[unknown])[0]
    resp_net, resp_group = nets.classify(conns["id.resp_h"])
    resp = np.where(resp_known, resp_local, resp_net) | (orig & resp_group)
    out = np.full(len(conns), "external", dtype=object)
    out[orig & resp] = "internal"
    out[orig & ~resp] = "outbound"
    out[~orig & resp] = "inbound"
    return out


def is_high_family(family: str | None) -> bool:
    """Whether a family name says C&C, scanning, flooding or brute force."""
    if not family:
        return False
    low = family.lower()
    return any(word in low for word in HIGH_FAMILY_WORDS)


def severity(direction: str, family: str | None = None, *, hosts: int = 1, ports: int = 1, conns: int = 1) -> str:
    """The severity of an incident (see the module's docstring for the rules)."""
    if direction not in ("outbound", "internal"):
        return "low"
    if is_high_family(family) or hosts >= SCAN_MIN_HOSTS or ports >= SCAN_MIN_PORTS or conns >= FLOOD_MIN_CONNS:
        return "high"
    return "medium"


def severities(direction: Sequence[str], family: Sequence[str | None] | None = None) -> np.ndarray:
    """Per-connection severity (one connection: no scan or flood evidence), object array."""
    direction = np.asarray(direction, dtype=object)
    local = (direction == "outbound") | (direction == "internal")
    high = np.zeros(len(direction), dtype=bool)
    if family is not None:
        fam = pd.Series(np.asarray(family, dtype=object)).fillna("").astype(str)
        high = fam.map({f: is_high_family(f) for f in fam.unique()}).to_numpy(dtype=bool)
    return np.where(local, np.where(high, "high", "medium"), "low").astype(object)


LOCAL_DISCOVERY_PORTS: frozenset[int] = frozenset({67, 68, 137, 138, 1900, 3702, 5353, 5355})
"""UDP ports of link-local discovery and naming (DHCP, NetBIOS, SSDP, WS-Discovery, mDNS, LLMNR)."""


def local_discovery(conns: pd.DataFrame) -> np.ndarray:
    """Rows that are link-local discovery chatter: UDP to a multicast or broadcast address on a
    discovery/naming port (mDNS, LLMNR, NetBIOS, SSDP, WS-Discovery, DHCP). Nobody answers them
    by design, so they end ``S0`` like an unanswered probe, but no attacker sends them inbound."""
    out = np.zeros(len(conns), dtype=bool)
    if not len(conns):
        return out
    port = conns["id.resp_p"]
    port = port if pd.api.types.is_integer_dtype(port.dtype) else pd.to_numeric(port, errors="coerce")
    port = port.to_numpy(dtype=float, na_value=np.nan)
    udp = pc.equal(arrow_texts(conns["proto"]), "udp").to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(udp & np.isin(port, list(LOCAL_DISCOVERY_PORTS)))  # the address is read for these only
    if not len(rows):
        return out
    resp = pc.utf8_lower(arrow_texts(conns["id.resp_h"].iloc[rows]))
    # the first of four dotted numbers in 224-239 (leading zeros as a number reads them), or IPv6 ff00::/8
    multicast = pc.or_(pc.match_substring_regex(resp, r"^0*2(2[4-9]|3[0-9])\."), pc.starts_with(resp, "ff"))
    broadcast = pc.ends_with(resp, ".255")
    out[rows] = pc.or_(multicast, broadcast).to_numpy(zero_copy_only=False)
    return out
