"""The Python front door: find and load the shipped model, read and write Zeek logs, score like the CLI.

    import zeek_ml
    model = zeek_ml.load_model()                      # the shipped model, wherever pip put it
    frame = zeek_ml.read_log("conn.log")              # or zat's LogToDataFrame, pandas.read_json(lines=True), ...
    p = model.predict_proba(frame)                    # P(malicious) per connection, float32
    flagged = model.predict(frame)                    # bool per connection, at the model's threshold

Everything here is a thin layer over the library modules (:mod:`zeek_ml.model.conn_model`,
:mod:`zeek_ml.sources.files`, :mod:`zeek_ml.services.score`); heavy imports happen on first use, so
``import zeek_ml`` stays cheap for the command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from zeek_ml.model.conn_model import ConnModel
    from zeek_ml.services.score import ScoreSummary

__all__ = [
    "DEFAULT_MODEL",
    "default_model_path",
    "find_model",
    "load_model",
    "read_log",
    "score",
    "shipped_model_candidates",
    "write_log",
]

DEFAULT_MODEL = "conn-cnn-v2"
"""The shipped model's file name, without ``.onnx``."""

PathLike = str | os.PathLike[str]


def shipped_model_candidates() -> list[Path]:
    """Where the shipped model is looked for, in order; those that exist first.

    A source checkout (or editable install) this code runs from, then the install prefix
    (``pip install .``, a venv, pipx: ``<prefix>/share/zeek-ml/models``), then the user base
    (``pip install --user``). Never the working directory.
    """
    import site

    name = f"{DEFAULT_MODEL}.onnx"
    source_tree = Path(__file__).resolve().parent.parent
    candidates = []
    if (source_tree / "pyproject.toml").is_file():  # running from a checkout (or an editable install)
        candidates.append(source_tree / "models" / name)
    candidates.append(Path(sys.prefix) / "share" / "zeek-ml" / "models" / name)
    candidates.append(Path(site.getuserbase()) / "share" / "zeek-ml" / "models" / name)  # pip install --user
    found = [p for p in candidates if p.is_file()]
    return found + [p for p in candidates if p not in found]


def default_model_path() -> Path:
    """``$ZEEK_ML_MODEL``, else the first of :func:`shipped_model_candidates`.

    Never the working directory: a ``./models/`` there is used only when named (``--model
    models/x.onnx``, ``load_model("models/x.onnx")``), so a file dropped where zeek-ml happens
    to run cannot replace the model.
    """
    env = os.environ.get("ZEEK_ML_MODEL")
    if env:
        return Path(env)
    return shipped_model_candidates()[0]


def load_model(path: PathLike | None = None, *, intra_op_threads: int = 1) -> ConnModel:
    """Load a zeek-ml ONNX model: ``path``, else ``$ZEEK_ML_MODEL``, else the shipped model.

    Raises :class:`~zeek_ml.model.conn_model.ModelLoadError` (naming every place looked in when no model
    is found) or :class:`~zeek_ml.model.conn_model.FeatureSpecMismatch`.
    """
    from zeek_ml.model.conn_model import load_model as _load_onnx

    return _load_onnx(find_model() if path is None else path, intra_op_threads=intra_op_threads)


def find_model(*, hint: str = "pass a path") -> Path:
    """The model to load when none is named: :func:`default_model_path`, or a
    :class:`~zeek_ml.model.conn_model.ModelLoadError` saying where it looked (``hint``: how to name one)."""
    from zeek_ml.model.conn_model import ModelLoadError

    path = default_model_path()
    if not path.is_file():
        if os.environ.get("ZEEK_ML_MODEL"):
            raise ModelLoadError(f"model not found: {path} (ZEEK_ML_MODEL; not a file)")
        looked = ", ".join(str(p) for p in shipped_model_candidates())
        raise ModelLoadError(f"model not found (looked in {looked}); {hint} or set ZEEK_ML_MODEL")
    return path


def read_log(
    path: PathLike | Iterable[PathLike], *, strict: bool = False, rejects: PathLike | None = None, **options: Any
) -> pd.DataFrame:
    """Read Zeek logs (TSV or JSON, plain or gzip; files, directories, globs) into one DataFrame.

    Columns have Zeek's names (``id.orig_h``), conn logs get conn.log's standard columns
    (unset where absent), types as :func:`zeek_ml.conn_frame` gives them. Malformed lines are
    skipped and counted (``rejects``: a JSON-lines file that keeps them); ``strict`` raises
    :class:`~zeek_ml.sources.reading.MalformedLineError` at the first one instead. Other ``options``
    go to :func:`zeek_ml.sources.files.iter_batches` (``source``, ``fields``, ``conn``, ``log_path``).
    For logs too big for memory, iterate :func:`zeek_ml.sources.files.iter_batches` instead.
    """
    from zeek_ml.sources.files import read_frames
    from zeek_ml.sources.reading import RejectLog

    reject_log = RejectLog(rejects, strict=strict)
    try:
        return read_frames(path, rejects=reject_log, strict=strict, **options)
    finally:
        reject_log.close()


def write_log(
    frame: pd.DataFrame,
    path: PathLike,
    *,
    log_path: str = "conn",
    fields: Sequence[tuple[str, str]] | None = None,
    fmt: str = "tsv",
    json_ts: str = "epoch",
) -> int:
    """Write ``frame`` as a Zeek log (``fmt`` ``tsv`` or ``json``) to ``path`` (``-``: stdout); returns rows written.

    ``fields`` are (name, Zeek type) pairs in column order; by default the frame's columns,
    typed from ``frame.attrs["types"]`` (set by the reader), conn.log's schema, else the dtype.
    ``log_path`` is the TSV ``#path`` line.
    """
    from zeek_ml.formats.writer import ZeekLogWriter

    if fields is None:
        fields = [(str(name), _zeek_type(frame, str(name))) for name in frame.columns]
    with ZeekLogWriter(path, log_path, fields, fmt=fmt, json_ts=json_ts) as writer:
        return writer.write(frame)


def _zeek_type(frame: pd.DataFrame, name: str) -> str:
    """The Zeek type of one column: the reader's, conn.log's, else one fitting its dtype."""
    import pandas as pd

    from zeek_ml.formats.schema import CONN_TYPES, KNOWN_EXTRA_TYPES

    known = (frame.attrs.get("types") or {}).get(name) or CONN_TYPES.get(name) or KNOWN_EXTRA_TYPES.get(name)
    if known:
        return known
    dtype = frame[name].dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "time"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "interval"
    return "string"


def score(
    paths: PathLike | Iterable[PathLike],
    output: PathLike,
    *,
    model: ConnModel | PathLike | None = None,
    all_out: PathLike | None = None,
    rejects_out: PathLike | None = None,
    fmt: str = "auto",
    json_ts: str = "auto",
    progress: bool = False,
    **options: Any,
) -> ScoreSummary:
    """What ``zeek-ml score PATHS -o OUTPUT`` does: score every connection, write the notice log.

    ``model`` is a loaded model, a path, or None for :func:`load_model`'s default. ``all_out``
    also writes every connection with its score, ``rejects_out`` the malformed lines. Other
    ``options`` are :func:`zeek_ml.services.score.score_logs`'s (``threshold``, ``aggregate``,
    ``min_severity``, ``profile``, ``source``, ``strict``...). Outputs appear whole or not at
    all. Returns the run's :class:`~zeek_ml.services.score.ScoreSummary` (records, notices...).
    """
    from zeek_ml.model.conn_model import ConnModel
    from zeek_ml.services.score import score_logs

    if not isinstance(model, ConnModel):
        model = load_model(model)
    inputs = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    return score_logs(
        inputs,
        model,
        output,
        fmt=fmt,
        json_ts=json_ts,
        all_out=all_out,
        rejects_out=rejects_out,
        progress=progress,
        **options,
    )
