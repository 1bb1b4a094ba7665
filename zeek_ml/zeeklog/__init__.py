"""Read and write Zeek logs: TSV and JSON, plain or gzip, with Zeek's escaping."""

from zeek_ml.zeeklog.reader import (
    MalformedLineError,
    ReadStats,
    Reject,
    RejectLog,
    SourceError,
    expand_sources,
    iter_batches,
    read_frames,
)
from zeek_ml.zeeklog.schema import CONN_FIELDS, NOTICE_FIELDS

__all__ = [
    "CONN_FIELDS",
    "NOTICE_FIELDS",
    "MalformedLineError",
    "ReadStats",
    "Reject",
    "RejectLog",
    "SourceError",
    "expand_sources",
    "iter_batches",
    "read_frames",
]
