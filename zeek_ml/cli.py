"""The ``zeek-ml`` command: a thin layer over the library.

Exit codes: 0 ok; 2 bad usage or unreadable input; 3 model missing, corrupt or
computing other features than this code; 4 a malformed line in ``--strict`` mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from zeek_ml import __version__

DEFAULT_MODEL = "conn-cnn-v1"
"""The shipped model's file name, without ``.onnx``."""

EXIT_INPUT = 2
EXIT_MODEL = 3
EXIT_MALFORMED = 4


class CliError(Exception):
    """A one-line reason and an exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def default_model_path() -> Path:
    """``$ZEEK_ML_MODEL``, else the shipped model: ./models, the source tree, or the install prefix."""
    env = os.environ.get("ZEEK_ML_MODEL")
    if env:
        return Path(env)
    name = f"{DEFAULT_MODEL}.onnx"
    candidates = [
        Path.cwd() / "models" / name,
        Path(__file__).resolve().parent.parent / "models" / name,
        Path(sys.prefix) / "share" / "zeek-ml" / "models" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[-1]


def _load(path: str | None):
    from zeek_ml.model import FeatureSpecMismatch, ModelLoadError, load_model

    model_path = Path(path) if path else default_model_path()
    if not model_path.is_file():
        raise CliError(f"model not found: {model_path} (pass --model PATH or set ZEEK_ML_MODEL)", EXIT_MODEL)
    try:
        return load_model(model_path)
    except FeatureSpecMismatch as e:
        raise CliError(f"{model_path}: feature spec mismatch: {e}", EXIT_MODEL) from e
    except ModelLoadError as e:
        raise CliError(f"{model_path}: {e}", EXIT_MODEL) from e


def _say(message: str) -> None:
    print(f"zeek-ml: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- score


def cmd_score(args: argparse.Namespace) -> int:
    from zeek_ml.model import FeatureSpecMismatch
    from zeek_ml.score import score_logs
    from zeek_ml.zeeklog import MalformedLineError, RejectLog, SourceError

    model = _load(args.model)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold {args.threshold}: must be between 0 and 1", EXIT_INPUT)
    rejects = RejectLog(args.rejects, strict=args.strict)
    try:
        summary = score_logs(
            args.inputs,
            model,
            args.output,
            fmt=args.format,
            json_ts=args.json_ts,
            threshold=args.threshold,
            all_out=args.all,
            rejects=rejects,
            strict=args.strict,
            fields=args.fields.split(",") if args.fields else None,
            progress=False if args.quiet else None,
        )
    except SourceError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    except MalformedLineError as e:
        raise CliError(f"malformed line (--strict): {e}", EXIT_MALFORMED) from e
    except FeatureSpecMismatch as e:
        raise CliError(f"feature spec mismatch: {e}", EXIT_MODEL) from e
    for reject in summary.first_rejects:
        _say(f"rejected {reject}")
    if summary.rejected > len(summary.first_rejects):
        more = summary.rejected - len(summary.first_rejects)
        where = f", all in {args.rejects}" if args.rejects else " (--rejects FILE keeps them all)"
        _say(f"... and {more:,} more rejected lines{where}")
    if args.summary_json:
        print(json.dumps(summary.as_dict()))
    if not args.quiet:
        _say(summary.line())
    return 0


# --------------------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace) -> int:
    from zeek_ml.watch.service import EventLog, Watcher, WatchOptions

    if args.print_systemd_unit:
        from importlib.resources import files

        print(files("zeek_ml.watch").joinpath("zeek-ml-watch.service").read_text(), end="")
        return 0
    if not args.path or not args.output:
        raise CliError("watch needs PATH and -o/--output (or --print-systemd-unit)", EXIT_INPUT)
    model = _load(args.model)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold {args.threshold}: must be between 0 and 1", EXIT_INPUT)
    options = WatchOptions(
        path=args.path,
        notice_out=args.output,
        fmt=args.format,
        json_ts=args.json_ts,
        all_out=args.all,
        rejects_out=args.rejects,
        checkpoint=args.checkpoint,
        threshold=args.threshold,
        poll_interval=args.poll_interval,
        use_events=not args.poll,
        batch_bytes=args.batch_kib << 10,
        from_end=args.from_end,
        rotated_dirs=args.rotated_dir or [],
        log_json=args.log_format == "json",
        metrics=args.metrics,
        exit_when_idle=args.exit_when_idle,
    )
    watcher = Watcher(options, model, EventLog(options.log_json))
    watcher.install_signals()
    try:
        return watcher.run()
    except PermissionError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    except ValueError as e:
        raise CliError(str(e), EXIT_INPUT) from e


# --------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    model = _load(args.model)
    if args.json:
        print(json.dumps(model.card, indent=2, sort_keys=True))
        return 0
    spec = model.spec
    print(f"model      {model.name} v{model.version}")
    print(f"file       {model.path}")
    print(f"sha256     {model.sha256}")
    print(f"threshold  {model.threshold:.4f}")
    print(f"features   {spec.name} v{spec.version}, {len(spec.features)} columns:")
    for feature in spec.features:
        vocab = f" [{', '.join(feature.vocab)}]" if feature.vocab else ""
        print(f"  {feature.name:<28} {feature.kind}{vocab}")
    metrics = model.metrics or {}
    pooled = metrics.get("heldout_pooled") or metrics.get("pooled")
    if pooled:
        print("held-out captures, pooled:")
        for key, value in pooled.items():
            print(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
    return 0


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from zeek_ml import train
    except ImportError as e:
        raise CliError(
            f"training needs the train extra ({e.name} missing): pip install torch==2.13.0 && pip install '.[train]'",
            EXIT_INPUT,
        ) from e
    return int(train.main(args.train_args) or 0)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zeek-ml", description="A learned intrusion detector for Zeek conn logs.")
    parser.add_argument("--version", action="version", version=f"zeek-ml {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser(
        "score",
        help="score conn logs, write a notice log",
        description="Score Zeek conn logs (TSV or JSON, plain or .gz, files, directories of rotated logs, globs) "
        "with the ONNX model and write the connections at or above the threshold as a Zeek notice log.",
    )
    score.add_argument("inputs", nargs="+", help="conn log files, directories or globs")
    score.add_argument("-o", "--output", required=True, help="notice log to write ('-' for stdout)")
    score.add_argument("--format", choices=("tsv", "json"), default="tsv", help="output format (default: tsv)")
    score.add_argument(
        "--json-ts", choices=("epoch", "iso8601", "millis"), default="epoch", help="ts format for --format json"
    )
    score.add_argument("-m", "--model", help="ONNX model (default: the shipped model)")
    score.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    score.add_argument("--all", metavar="FILE", help="also write every connection with its score (enriched conn log)")
    score.add_argument("--rejects", metavar="FILE", help="write malformed lines here (JSON lines: file, line, reason)")
    score.add_argument("--strict", action="store_true", help="stop at the first malformed line (exit 4)")
    score.add_argument("--fields", help="comma-separated column names for header-less TSV (zeek-cut output)")
    score.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    score.add_argument("--summary-json", action="store_true", help="print the run's summary as JSON on stdout")
    score.set_defaults(func=cmd_score)

    watch = sub.add_parser(
        "watch",
        help="follow a live conn.log (or eve.json) through rotation, score it, append notices",
        description="Follow Zeek's live conn.log in PATH (a log directory such as logs/current, or the file) "
        "through rotation, truncation and restarts; score each connection exactly once and append notices. "
        "A checkpoint (default: OUTPUT.checkpoint.json) makes a restart resume where it stopped, kill -9 included.",
    )
    watch.add_argument("path", nargs="?", help="log directory (logs/current, a spool directory) or a live log file")
    watch.add_argument("-o", "--output", help="notice log to append to")
    watch.add_argument("--format", choices=("tsv", "json"), default="tsv", help="output format (default: tsv)")
    watch.add_argument("--json-ts", choices=("epoch", "iso8601", "millis"), default="epoch", help="ts for json")
    watch.add_argument("-m", "--model", help="ONNX model (default: the shipped model)")
    watch.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    watch.add_argument("--all", metavar="FILE", help="also append every connection with its score")
    watch.add_argument("--rejects", metavar="FILE", help="append malformed lines here (JSON lines)")
    watch.add_argument("--checkpoint", metavar="FILE", help="checkpoint file (default: OUTPUT.checkpoint.json)")
    watch.add_argument(
        "--rotated-dir",
        action="append",
        metavar="DIR",
        help="also look here for rotated files to catch up on after a restart (repeatable; the live file's "
        "directory and its log-queue/ are always searched)",
    )
    watch.add_argument("--from-end", action="store_true", help="on a first start, skip the rows already written")
    watch.add_argument("--poll", action="store_true", help="no file-system events: poll (NFS and the like)")
    watch.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls (default: 1)")
    watch.add_argument("--batch-kib", type=int, default=4096, help="most log text per batch, KiB (default: 4096)")
    watch.add_argument("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics (HOST defaults to 127.0.0.1)")
    watch.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines on stderr")
    watch.add_argument("--exit-when-idle", type=float, metavar="SECONDS", help="stop after this long without new lines")
    watch.add_argument("--print-systemd-unit", action="store_true", help="print a systemd unit for this service")
    watch.set_defaults(func=cmd_watch)

    info = sub.add_parser("info", help="print a model's card: features, threshold, metrics, sha256")
    info.add_argument("model", nargs="?", help="ONNX model (default: the shipped model)")
    info.add_argument("--json", action="store_true", help="print the whole card as JSON")
    info.set_defaults(func=cmd_info)

    train = sub.add_parser("train", help="train the CNN on labelled conn logs (needs the train extra)", add_help=False)
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        _say(f"error: {e}")
        return e.code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
