"""zeek-ml: a learned intrusion detector for Zeek conn logs.

Three lines to a prediction::

    import zeek_ml
    model = zeek_ml.load_model()                        # the shipped model, wherever pip put it
    flagged = model.predict(zeek_ml.read_log("conn.log"))  # bool per connection

``model.predict_proba(frame)`` gives P(malicious). Both take a conn DataFrame in any usual
shape (this package's reader, zat's ``LogToDataFrame``, parsezeeklogs records,
``pandas.read_json(lines=True)`` of a Zeek JSON log): :func:`conn_frame` normalises it and
raises :class:`FrameError` naming every missing or mistyped column (:data:`MODEL_COLUMNS`).
:func:`score` does what ``zeek-ml score`` does; :func:`iter_batches` streams a log too big for
memory in bounded batches (rejects counted in a :class:`RejectLog`). Names load on first use, so importing the
package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zeek_ml._version import __version__

if TYPE_CHECKING:
    from zeek_ml.api import default_model_path, load_model, read_log, score, write_log
    from zeek_ml.model.conn_model import ConnModel, FeatureSpecMismatch, ModelLoadError
    from zeek_ml.sources.files import iter_batches
    from zeek_ml.sources.frame import MODEL_COLUMNS, FrameError, conn_frame
    from zeek_ml.sources.reading import RejectLog

__all__ = [
    "MODEL_COLUMNS",
    "ConnModel",
    "FeatureSpecMismatch",
    "FrameError",
    "ModelLoadError",
    "RejectLog",
    "__version__",
    "conn_frame",
    "default_model_path",
    "iter_batches",
    "load_model",
    "read_log",
    "score",
    "write_log",
]

_HOMES = {
    "load_model": "zeek_ml.api",
    "default_model_path": "zeek_ml.api",
    "read_log": "zeek_ml.api",
    "write_log": "zeek_ml.api",
    "score": "zeek_ml.api",
    "iter_batches": "zeek_ml.sources.files",
    "RejectLog": "zeek_ml.sources.reading",
    "MODEL_COLUMNS": "zeek_ml.sources.frame",
    "FrameError": "zeek_ml.sources.frame",
    "conn_frame": "zeek_ml.sources.frame",
    "ConnModel": "zeek_ml.model.conn_model",
    "FeatureSpecMismatch": "zeek_ml.model.conn_model",
    "ModelLoadError": "zeek_ml.model.conn_model",
}


def __getattr__(name: str) -> Any:
    """The public names, imported from their module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'zeek_ml' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
