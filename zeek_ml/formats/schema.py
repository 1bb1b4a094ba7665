"""Zeek field types, the conn.log and notice.log schemas, and their column types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

CONN_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
)
"""conn.log's standard fields in Zeek's order (Zeek 6.0 to 8.x, default scripts)."""

CONN_TYPES: dict[str, str] = dict(CONN_FIELDS)

# Fields that policy scripts or newer Zeek versions add to conn.log.
KNOWN_EXTRA_TYPES: dict[str, str] = {
    "ip_proto": "count",
    "community_id": "string",
    "orig_l2_addr": "string",
    "resp_l2_addr": "string",
    "vlan": "int",
    "inner_vlan": "int",
    "id.vlan": "int",
    "id.inner_vlan": "int",
    "_node_name": "string",
    "label": "string",
    "detailedlabel": "string",
    "detailed-label": "string",
}

NOTICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("fuid", "string"),
    ("file_mime_type", "string"),
    ("file_desc", "string"),
    ("proto", "enum"),
    ("note", "enum"),
    ("msg", "string"),
    ("sub", "string"),
    ("src", "addr"),
    ("dst", "addr"),
    ("p", "port"),
    ("n", "count"),
    ("peer_descr", "string"),
    ("actions", "set[enum]"),
    ("email_dest", "set[string]"),
    ("suppress_for", "interval"),
    ("remote_location.country_code", "string"),
    ("remote_location.region", "string"),
    ("remote_location.city", "string"),
    ("remote_location.latitude", "double"),
    ("remote_location.longitude", "double"),
)
"""notice.log's 26 standard columns, exactly as Zeek 7.0 writes them."""

FLOAT_TYPES = frozenset({"time", "interval", "double"})
INT_TYPES = frozenset({"count", "int", "port"})
STRING_TYPES = frozenset({"string", "enum", "addr", "subnet", "pattern", "func", "file"})
"""Zeek types a log writes as text (JSON strings)."""

# --------------------------------------------------------------------------- value ranges
#
# What a value of each Zeek type may be, as the reader checks it; a line holding a value
# outside its type's range is rejected (file, line, field), never scored with a wrong number.

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""Batches hold counts and ints as int64: a Zeek count of 2^63 or more (no real byte or packet
count comes near) cannot be held and is rejected."""

PORT_MAX = 65535
TIME_MIN = 0.0
TIME_MAX = 253402300800.0
"""``time`` values must lie in [1970-01-01, 10000-01-01): what every date library (and Zeek's
own ``#open`` format) can write. Whether a time is plausible for the stream is decided later
(the host context and incident clock clamp jumps); the reader only refuses what no clock says."""

NONNEGATIVE_FIELDS = frozenset({"duration"})
"""conn.log fields of a signed type that Zeek never writes below zero."""

MAX_VALUE_CHARS = 4096
"""Longest string value kept, in characters (a set or vector: its whole text). Longer values are
cut to this length at read time and counted (``ReadStats.capped``). No conn.log value comes near
(``history`` is a few dozen letters, a uid 18 characters); without a cap one crafted 1 MiB value
costs gigabytes downstream (per-letter history tables, explanations), so one line could exhaust
the sensor's memory."""

MAX_LINE_BYTES = 16 << 20
"""Longest line read: a line that runs past 16 MiB without a newline is rejected and skipped
without being held in memory (a conn.log line is a few hundred bytes)."""


class ColumnTypes(dict):
    """A batch's Zeek type per column, as ``frame.attrs["types"]`` holds it: read-only by convention.

    pandas deep-copies a frame's ``attrs`` into every Series and frame made from it (each column
    access); a dict of 21+ types made that a fifth of the time of a small batch. This one is shared,
    not copied (readers that change types make a ``dict`` of it first).
    """

    def __deepcopy__(self, memo: dict) -> ColumnTypes:
        return self


def is_container(zeek_type: str) -> bool:
    """True for ``set[...]``, ``vector[...]`` and old logs' ``table[...]``."""
    return zeek_type.startswith(("set[", "vector[", "table["))


def element_type(zeek_type: str) -> str:
    """``set[string]`` -> ``string``."""
    return zeek_type[zeek_type.index("[") + 1 : -1] if is_container(zeek_type) else zeek_type


def arrow_type(zeek_type: str) -> pa.DataType:
    """The Arrow type a column of this Zeek type is parsed into."""
    if zeek_type in FLOAT_TYPES:
        return pa.float64()
    if zeek_type in INT_TYPES:
        return pa.int64()
    if zeek_type == "bool":
        return pa.bool_()
    if is_container(zeek_type):
        return pa.list_(arrow_type(element_type(zeek_type)))
    return pa.string()


def pandas_dtype(zeek_type: str) -> object:
    """The pandas dtype of a column of this Zeek type in a batch."""
    if zeek_type in FLOAT_TYPES:
        return np.float64
    if zeek_type in INT_TYPES:
        return pd.Int64Dtype()
    if zeek_type == "bool":
        return pd.BooleanDtype()
    if is_container(zeek_type):
        return object
    return pd.StringDtype(storage="pyarrow", na_value=np.nan)


_TYPES_MAPPER = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> DataFrame with the batch dtypes (nullable ints and bools)."""
    return table.to_pandas(types_mapper=_TYPES_MAPPER.get)


def guess_type(name: str, value: object) -> str:
    """Zeek type of a JSON field: from the conn schema, else from the JSON value."""
    known = CONN_TYPES.get(name) or KNOWN_EXTRA_TYPES.get(name)
    if known:
        return known
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if value < 0 else "count"
    if isinstance(value, float):
        return "double"
    if isinstance(value, list):
        inner = "string"
        if value:
            inner = guess_type("", value[0])
        return f"vector[{inner}]"
    return "string"
