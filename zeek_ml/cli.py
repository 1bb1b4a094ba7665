"""The ``zeek-ml`` command: a thin layer over the library.

Exit codes: 0 ok; 2 bad usage, unreadable input or an output that cannot or must not be
written; 3 model missing, corrupt or computing other features than this code; 4 a malformed
line in ``--strict`` mode; 1 anything unexpected (one line; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from zeek_ml._version import __version__
from zeek_ml.api import DEFAULT_MODEL as DEFAULT_MODEL  # re-exported: bench scripts name it
from zeek_ml.api import find_model

OUTPUT_FORMATS = ("auto", "tsv", "json", "eve")
"""``--format``: ``auto`` writes notices the way the input is written (see ``zeek_ml.sinks.logs.logs.match_sensor``)."""
JSON_TS_CHOICES = ("auto", "epoch", "iso8601", "millis")

EXIT_INPUT = 2
EXIT_MODEL = 3
EXIT_MALFORMED = 4


class CliError(Exception):
    """A one-line reason and an exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _load(path: str | None):
    from zeek_ml.model.conn_model import FeatureSpecMismatch, ModelLoadError, load_model

    if path:
        model_path = Path(path)
        if not model_path.is_file():
            raise CliError(f"model not found: {model_path} (--model; not a file)", EXIT_MODEL)
    else:
        try:
            model_path = find_model(hint="pass --model PATH")
        except ModelLoadError as e:
            raise CliError(str(e), EXIT_MODEL) from e
    try:
        return load_model(model_path)
    except FeatureSpecMismatch as e:
        raise CliError(f"{model_path}: feature spec mismatch: {e}", EXIT_MODEL) from e
    except ModelLoadError as e:
        raise CliError(f"{model_path}: {e}", EXIT_MODEL) from e
    except OSError as e:
        raise CliError(f"{model_path}: cannot read the model: {e.strerror or e}", EXIT_MODEL) from e


def _say(message: str) -> None:
    print(f"zeek-ml: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- score


def _threshold(model, args: argparse.Namespace) -> float | None:
    """``--threshold`` as given, or the card's threshold for ``--target-fpr``, or None (the card's default)."""
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold {args.threshold}: must be between 0 and 1", EXIT_INPUT)
    target = getattr(args, "target_fpr", None)
    if target is None:
        return args.threshold
    if args.threshold is not None:
        raise CliError("--threshold and --target-fpr exclude each other", EXIT_INPUT)
    if not 0.0 < target < 1.0:
        raise CliError(f"--target-fpr {target}: must be between 0 and 1 (0.001 = 0.1 %)", EXIT_INPUT)
    try:
        return model.threshold_for_fpr(target)
    except ValueError as e:
        raise CliError(f"--target-fpr: {e}", EXIT_MODEL) from e


def add_notice_options(parser: argparse.ArgumentParser) -> None:
    """Add the options shaping notices (aggregation, severity, site profile) to a subcommand."""
    group = parser.add_argument_group("notices")
    group.add_argument(
        "--no-aggregate", action="store_true", help="one notice per flagged connection, not one per incident"
    )
    group.add_argument(
        "--suppress-for",
        type=float,
        metavar="SECONDS",
        help="suppression interval: an incident gathers its key's connections this long (default: the "
        "profile's, else 3600)",
    )
    group.add_argument(
        "--local-nets",
        metavar="CIDR,...",
        help="local networks for direction where the log has no local_orig/local_resp (default: the "
        "profile's, else the private address space)",
    )
    group.add_argument(
        "--min-severity", choices=("low", "medium", "high"), default="low", help="write notices at least this severe"
    )
    group.add_argument("--profile", metavar="SITE.json", help="site profile from 'zeek-ml calibrate'")
    group.add_argument(
        "--notice-local-discovery",
        action="store_true",
        help="also notice mDNS, LLMNR, NetBIOS, SSDP and DHCP chatter to multicast/broadcast addresses "
        "(never an inbound attack; left out by default)",
    )


def notice_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`zeek_ml.sinks.logs.logs.build_notice_sink` from ``add_notice_options``'s
    options, checked (a bad profile, net or interval is a CliError, exit 2)."""
    from zeek_ml.notices.profile import ProfileError, SiteProfile
    from zeek_ml.sources.local_nets import LocalNets

    profile = None
    if args.profile:
        try:
            profile = SiteProfile.load(args.profile)
        except OSError as e:
            raise CliError(f"--profile {args.profile}: {e.strerror or e}", EXIT_INPUT) from e
        except ProfileError as e:
            raise CliError(f"--profile {args.profile}: {e}", EXIT_INPUT) from e
    try:
        nets = None if args.local_nets is None else list(LocalNets.parse(args.local_nets).nets)
    except ValueError as e:
        raise CliError(f"--local-nets: {e}", EXIT_INPUT) from e
    if args.suppress_for is not None and not args.suppress_for > 0:
        raise CliError(f"--suppress-for {args.suppress_for}: must be > 0 seconds", EXIT_INPUT)
    return {
        "aggregate": not args.no_aggregate,
        "suppress_for": args.suppress_for,
        "local_nets": nets,
        "min_severity": args.min_severity,
        "profile": profile,
        "local_discovery": args.notice_local_discovery,
    }


def default_threads() -> int:
    """The CPU cores this process may run on (its affinity; all of them where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of threads, 1 or more")
    return value


def cmd_score(args: argparse.Namespace) -> int:
    arrow_memory_to_the_system()
    model = _load(args.model)
    model.explain_threads = args.threads  # the model itself runs beside the rest (Scorer.stream)
    threshold = _threshold(model, args)
    options = notice_options(args)
    _exit_on_sigterm()
    with _cluster_engine(args, model, threshold, options) as engine:  # issue 14: --workers / --cluster
        return _score_cmd(args, model, threshold, options, engine)


def _score_cmd(args: argparse.Namespace, model, threshold, options, engine) -> int:
    from zeek_ml.model.conn_model import FeatureSpecMismatch
    from zeek_ml.services.score import score_logs
    from zeek_ml.sources.reading import MalformedLineError, SourceError

    runner = None
    if engine is not None:  # several sensors: each one a task of its own on the same cluster
        from zeek_ml.services.distributed import SensorTasks

        runner = SensorTasks(engine.client, model)
    try:
        summary = score_logs(
            args.inputs,
            model,
            args.output,
            fmt=args.format,
            json_ts=args.json_ts,
            threshold=threshold,
            all_out=args.all,
            rejects_out=args.rejects,
            strict=args.strict,
            fields=args.fields.split(",") if args.fields else None,
            progress=False if args.quiet else None,
            source=args.source,
            engine=engine,
            sensor_from=args.sensor_from,
            sensor_runner=runner,
            split_days=args.split_days,
            threads=args.threads,
            **options,
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
        # never into the stream that carries the notices (or --all, --rejects): then on stderr
        on_stdout = _is_stdout(args.output, args.all, args.rejects)
        print(json.dumps(summary.as_dict()), file=sys.stderr if on_stdout else sys.stdout, flush=True)
    if not args.quiet:
        _say(summary.line())
        if runner is not None and runner.stats.sensors:
            _say(runner.stats.line())
        elif engine is not None:
            _say(engine.stats.line())
    return 0


# --- issue 14: scoring on a Dask cluster (zeek_ml.services.distributed) ------------------------------------------
@contextlib.contextmanager
def _cluster_engine(args: argparse.Namespace, model, threshold, options):
    """A :class:`~zeek_ml.services.distributed.ClusterEngine` for ``--workers``/``--cluster``, else None."""
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers {args.workers}: must be >= 1", EXIT_INPUT)
    if not args.workers and not args.cluster:
        yield None
        return
    if args.partition_rows < 1:
        raise CliError(f"--partition-rows {args.partition_rows}: must be >= 1", EXIT_INPUT)
    if args.warmup_rows < 0:
        raise CliError(f"--warmup-rows {args.warmup_rows}: must be >= 0", EXIT_INPUT)
    try:
        from zeek_ml.services.distributed import ClusterEngine, dask_client
    except ImportError as e:
        raise CliError(f"--workers/--cluster need Dask: pip install 'zeek-ml[cluster]' ({e})", EXIT_INPUT) from e
    floor = model.threshold if threshold is None else threshold
    profile = options.get("profile")
    if profile is not None and getattr(profile, "thresholds", None):
        floor = min([floor, *profile.thresholds.values()])
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(args.workers, args.cluster, quiet=args.quiet))
        except (OSError, TimeoutError) as e:
            raise CliError(f"--cluster {args.cluster}: cannot reach the Dask scheduler: {e}", EXIT_INPUT) from e
        yield ClusterEngine(
            client,
            model,
            threshold,
            partition_rows=args.partition_rows,
            warmup_rows=args.warmup_rows,
            explain_floor=floor,
        )


def _exit_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``) unwinds like Ctrl-C, so a stopped run removes its temporary outputs.

    Both are also remembered (:func:`~zeek_ml.sources.files.stop_run`): a stop raised while a C
    extension runs Python code and clears the error (seen in ``import numba``) or in a finalizer is
    lost to Python, and the reader raises it again at its next read or wait for input.
    """
    import signal

    from zeek_ml.sources.files import stop_run

    def stop(signum: int, frame: object) -> None:
        stop_run(SystemExit(128 + signum))

    def interrupt(signum: int, frame: object) -> None:
        stop_run(KeyboardInterrupt())

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored
        signal.signal(signal.SIGINT, interrupt)


def _is_stdout(*outputs: str | None) -> bool:
    """Whether one of ``outputs`` is this process's stdout (``-``, ``/dev/stdout``, the file stdout goes to)."""
    try:
        mine = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    for out in outputs:
        if out is None:
            continue
        if out == "-":
            return True
        try:
            st = os.stat(out)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return True
    return False


# --------------------------------------------------------------------------- calibrate


def cmd_calibrate(args: argparse.Namespace) -> int:
    from zeek_ml.formats.safeio import AtomicOutput, check_outputs
    from zeek_ml.services.calibrate import calibrate_logs
    from zeek_ml.sources.files import expand_sources
    from zeek_ml.sources.local_nets import LocalNets
    from zeek_ml.sources.reading import RejectLog, SourceError

    model = _load(args.model)
    try:
        check_outputs({"-o": args.output}, expand_sources(args.inputs))
    except SourceError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    AtomicOutput(args.output).discard()  # an output we cannot write is said now, not after the whole fit
    until = None
    if args.until:
        try:
            until = float(args.until)
        except ValueError:
            try:
                import pandas as pd

                stamp = pd.Timestamp(args.until)
                until = (stamp if stamp.tzinfo else stamp.tz_localize("UTC")).timestamp()
            except (ValueError, OverflowError) as e:  # pandas' OutOfBoundsDatetime is a ValueError
                raise CliError(f"--until {args.until}: not an epoch or ISO 8601 time", EXIT_INPUT) from e
        if not (math.isfinite(until) and 0 <= until < 253402300800):  # 1970 .. 9999, as a log's ts
            raise CliError(f"--until {args.until}: not a time between 1970 and 9999", EXIT_INPUT)
    if args.target_fpr is not None and not 0.0 < args.target_fpr < 1.0:
        raise CliError(f"--target-fpr {args.target_fpr}: must be between 0 and 1", EXIT_INPUT)
    if not args.suppress_for > 0 or not args.budget >= 0:
        raise CliError("--suppress-for must be > 0 and --budget >= 0", EXIT_INPUT)
    try:
        nets = None if args.local_nets is None else LocalNets.parse(args.local_nets)
    except ValueError as e:
        raise CliError(f"--local-nets: {e}", EXIT_INPUT) from e
    try:
        profile = calibrate_logs(
            args.inputs,
            model,
            rejects=RejectLog(),
            local_nets=nets,
            suppress_for=args.suppress_for,
            budget_per_day=args.budget,
            target_fpr=args.target_fpr,
            min_presence=args.min_presence,
            until=until,
        )
    except SourceError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    if not profile.fitted_on.get("rows"):
        raise CliError("no connections to calibrate on", EXIT_INPUT)
    profile.save(args.output)
    report = profile.report
    _say(
        f"calibrated on {profile.fitted_on['rows']:,} connections ({profile.fitted_on['first_ts']} .. "
        f"{profile.fitted_on['last_ts']}): {len(profile.patterns)} normal pattern(s), thresholds "
        f"{profile.thresholds or 'of the model'}; notices on this stretch {sum(report['notices_before'].values())} "
        f"-> {sum(report['notices_after'].values())}; wrote {args.output}"
    )
    return 0


# --------------------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace) -> int:
    from zeek_ml.services.watch.service import BatchFailed, EventLog, Watcher, WatchOptions
    from zeek_ml.sources.reading import MalformedLineError

    if args.print_systemd_unit:
        from zeek_ml.services.watch.systemd import systemd_unit

        print(systemd_unit(), end="")
        return 0
    if not args.path or not args.output:
        raise CliError("watch needs PATH and -o/--output (or --print-systemd-unit)", EXIT_INPUT)
    model = _load(args.model)
    model.threads = args.threads
    options = WatchOptions(
        path=args.path,
        notice_out=args.output,
        fmt=args.format,
        json_ts=args.json_ts,
        all_out=args.all,
        verdicts_out=args.verdicts,
        rejects_out=args.rejects,
        checkpoint=args.checkpoint,
        threshold=_threshold(model, args),
        poll_interval=args.poll_interval,
        use_events=not args.poll,
        batch_bytes=args.batch_kib << 10,
        from_end=args.from_end,
        rotated_dirs=args.rotated_dir or [],
        log_json=args.log_format == "json",
        metrics=args.metrics,
        exit_when_idle=args.exit_when_idle,
        strict=args.strict,
        checkpoint_interval=args.checkpoint_interval,
        gather=args.gather,
        notice_options=notice_options(args),
    )
    watcher = Watcher(options, model, EventLog(options.log_json))
    watcher.install_signals()
    try:
        return watcher.run()
    except MalformedLineError as e:  # --strict: the checkpoint stays before the line
        raise CliError(str(e), EXIT_MALFORMED) from e
    except BatchFailed as e:
        if args.debug:
            raise
        raise CliError(f"{e} (run with --debug for the traceback)", 1) from e
    except PermissionError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    except ValueError as e:
        raise CliError(str(e), EXIT_INPUT) from e


# --------------------------------------------------------------------------- broker


def cmd_broker(args: argparse.Namespace) -> int:
    from zeek_ml.services.broker.bindings import BrokerUnavailable
    from zeek_ml.services.broker.service import STATE_ENV, BrokerOptions, BrokerService
    from zeek_ml.services.broker.transport import BrokerTransport, parse_address

    if args.peer and args.listen:
        raise CliError("--listen and --peer exclude each other", EXIT_INPUT)
    try:
        peer = parse_address(args.peer) if args.peer else None
        listen = None if peer else parse_address(args.listen or "127.0.0.1:9966")
    except ValueError as e:
        raise CliError(f"bad address: {e}", EXIT_INPUT) from e
    for name in ("batch_size", "queue_size", "outbox_size"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1", EXIT_INPUT)
    if not args.max_wait >= 0 or not args.status_interval > 0 or not args.retry > 0:
        raise CliError("--max-wait must be 0 or more, --status-interval and --retry more than 0", EXIT_INPUT)
    if args.metrics:
        try:
            parse_address(args.metrics)
        except ValueError as e:
            raise CliError(f"--metrics: {e}", EXIT_INPUT) from e
    model = _load(args.model)
    threshold = _threshold(model, args)
    try:
        transport = BrokerTransport(
            [args.conn_topic], listen=listen, peer=peer, retry=args.retry, buffer_size=max(20_000, args.batch_size)
        )
    except BrokerUnavailable as e:
        raise CliError(str(e), EXIT_INPUT) from e
    state_path = args.state or os.environ.get(STATE_ENV) or None
    if state_path:  # a state file that cannot be written is said now, not after the first batch
        from zeek_ml.formats.safeio import AtomicOutput, OutputError

        try:
            AtomicOutput(state_path).discard()
        except OutputError as e:
            raise CliError(f"--state {e.filename}: {e.strerror}", EXIT_INPUT) from e
    sinks = {}
    if args.output:
        from zeek_ml.sinks.logs import NoticeSink, file_writer

        if args.output == "-":
            sinks["notice"] = NoticeSink(file_writer("-", fmt=args.format))
        else:  # appended to across restarts, as watch does: never truncated
            from zeek_ml.services.watch.service import appending_writer

            try:
                sinks["notice"] = NoticeSink(appending_writer(args.output, fmt=args.format))
            except OSError as e:
                raise CliError(f"-o {e.filename or args.output}: {e.strerror or e}", EXIT_INPUT) from e
    options = BrokerOptions(
        conn_topic=args.conn_topic,
        verdict_topic=args.verdict_topic,
        ack_topic=args.ack_topic,
        threshold=threshold,
        batch_size=args.batch_size,
        max_wait=args.max_wait,
        queue_size=args.queue_size,
        outbox_size=args.outbox_size,
        status_interval=args.status_interval,
        log_json=args.log_format == "json",
        state_path=state_path,
    )
    service = BrokerService(transport, model, options, sinks)
    import signal

    def stop(signum: int, frame: object) -> None:
        service.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics = None
    try:
        if args.metrics:
            from zeek_ml.services.broker.metrics import BrokerMetrics

            metrics = BrokerMetrics(service, args.metrics)
            service.log("metrics", {"address": metrics.address})
        return service.run()
    except OSError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    except ValueError as e:  # a state file that is not one (CheckpointError)
        raise CliError(str(e), EXIT_INPUT) from e
    finally:
        if metrics is not None:
            metrics.close()


# --------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    from zeek_ml.sources.frame import MODEL_COLUMNS, describe_columns

    model = _load(args.model)
    if args.json:
        card = dict(model.card)
        card.setdefault("input_columns", describe_columns())
        print(json.dumps(card, indent=2, sort_keys=True))
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
    print("input      conn.log columns (Zeek type; * required, the others may be absent = unset):")
    for column in MODEL_COLUMNS:
        mark = "*" if column.required else " "
        print(f"  {column.name:<16}{mark} {column.zeek_type:<9} {column.meaning}")
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
        from zeek_ml.training import train
    except ImportError as e:
        raise CliError(
            f"training needs the train extra ({e.name} missing): pip install torch==2.13.0 && pip install '.[train]'",
            EXIT_INPUT,
        ) from e
    return int(train.main(args.train_args) or 0)


# --------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from zeek_ml.sources.reading import SourceError
    from zeek_ml.training.evaluate import evaluate_model

    arrow_memory_to_the_system()
    model = _load(args.model)
    model.threads = args.threads
    threshold = _threshold(model, args)
    try:
        report = evaluate_model(
            model,
            args.data,
            args.out,
            threshold=threshold,
            label_col=args.label_column,
            detail_col=args.detail_column,
            plots=not args.no_plots,
        )
    except SourceError as e:
        raise CliError(str(e), EXIT_INPUT) from e
    except (ValueError, KeyError) as e:
        raise CliError(str(e), EXIT_INPUT) from e
    print("\n".join(report["table"]))
    _say(f"report written to {os.path.join(args.out, 'report.md')} (+ report.json, {len(report['figures'])} PNG)")
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zeek-ml", description="A learned intrusion detector for Zeek conn logs.")
    parser.add_argument("--version", action="version", version=f"zeek-ml {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser(
        "score",
        help="score conn logs, write a notice log",
        description="Score Zeek conn logs (TSV or JSON, plain or .gz, files, directories of rotated logs, globs) "
        "with the ONNX model and write the connections at or above the threshold as a Zeek notice log.",
    )
    score.add_argument("inputs", nargs="+", help="conn log files, directories or globs")
    score.add_argument("-o", "--output", required=True, help="notice log to write ('-' for stdout)")
    score.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="auto",
        help="output format: Zeek notice log as tsv or json, or eve (Suricata eve.json alert events); "
        "auto: as the input is written (a JSON conn.log gives JSON notices, TSV gives TSV) (default: auto)",
    )
    score.add_argument(
        "--source",
        choices=("auto", "zeek", "suricata"),
        default="auto",
        help="input kind: auto (by content: Zeek TSV/JSON or Suricata eve.json), zeek, or suricata (eve.json flow "
        "events; directories give their eve.json* files) (default: auto)",
    )
    score.add_argument(
        "--json-ts",
        choices=JSON_TS_CHOICES,
        default="auto",
        help="how JSON notices write every time field (ts, zeek_ml.first_ts, zeek_ml.last_ts): epoch seconds, "
        "iso8601 text or integer millis (which Elastic and Filebeat misread as seconds); auto: as the input does, "
        "else epoch (default: auto)",
    )
    score.add_argument("-m", "--model", help="ONNX model (default: the shipped model)")
    score.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    score.add_argument(
        "--target-fpr",
        type=float,
        metavar="RATE",
        help="use the threshold the model card lists for this benign false-positive rate (0.001 = 0.1 %%), "
        "measured on its validation folds",
    )
    score.add_argument("--all", metavar="FILE", help="also write every connection with its score (enriched conn log)")
    score.add_argument("--rejects", metavar="FILE", help="write malformed lines here (JSON lines: file, line, reason)")
    score.add_argument("--strict", action="store_true", help="stop at the first malformed line (exit 4)")
    score.add_argument("--fields", help="comma-separated column names for header-less TSV (zeek-cut output)")
    score.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    score.add_argument("--summary-json", action="store_true", help="print the run's summary as JSON on stdout")
    score.add_argument(
        "--sensor-from",
        metavar="REGEX",
        help="name each file's sensor by this regular expression over its path (its 'sensor' or first group): "
        "each sensor is scored as a network of its own, its notices name it in peer_descr (default: the folders "
        "of an archive of several sensors, ARCHIVE/<sensor>/<YYYY-MM-DD>/conn.*.log.gz)",
    )
    score.add_argument(
        "--split-days",
        action="store_true",
        help="-o names a folder that gets one notice log per sensor and day: OUT/<sensor>/<YYYY-MM-DD>/notice.log "
        "(UTC days; OUT/<YYYY-MM-DD>/notice.log from one sensor), each written whole or not at all",
    )
    score.add_argument(
        "--threads",
        type=_threads,
        default=default_threads(),
        metavar="N",
        help="threads in this process: 2 or more run the model beside reading, features and writing, "
        "and explain notices in N threads (the same output); 1 runs everything in turn "
        f"(default: the cores this process may use, {default_threads()})",
    )
    add_notice_options(score)
    # --- issue 14: a Dask cluster
    cluster = score.add_argument_group("cluster (pip install 'zeek-ml[cluster]'; output identical to one process)")
    where = cluster.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="score on a local Dask cluster of N worker processes")
    where.add_argument("--cluster", metavar="ADDRESS", help="score on the Dask scheduler at ADDRESS (tcp://host:8786)")
    cluster.add_argument(
        "--partition-rows", type=int, default=50_000, metavar="N", help="rows per task on the cluster (50,000)"
    )
    cluster.add_argument(
        "--warmup-rows",
        type=int,
        metavar="N",
        default=0,
        help="0 (default): each partition starts from the exact host context before it, carried by a chain of "
        "cheap context-only tasks; N: start from a warm-up on the N rows before it instead (speculative, checked, "
        "re-scored when the context differs)",
    )
    score.set_defaults(func=cmd_score)

    cal = sub.add_parser(
        "calibrate",
        help="fit a site profile (thresholds, baselines of normal traffic) on the site's own logs",
        description="Score a stretch of the site's own conn logs (assumed mostly benign; a few attacks in it "
        "do not become normal) and write a site profile (JSON) for score/watch --profile: per-direction "
        "thresholds meeting an alert budget, and baselines of the flagged traffic that recurs at the site.",
    )
    cal.add_argument("inputs", nargs="+", help="conn log files, directories or globs of the site")
    cal.add_argument("-o", "--output", required=True, help="site profile to write (JSON)")
    cal.add_argument("-m", "--model", help="ONNX model (default: the shipped model)")
    cal.add_argument("--budget", type=float, default=5.0, metavar="N", help="notices per day and direction (5)")
    cal.add_argument("--target-fpr", type=float, metavar="RATE", help="instead of --budget: FPR per direction")
    cal.add_argument("--suppress-for", type=float, default=3600.0, metavar="SECONDS", help="suppression interval")
    cal.add_argument("--local-nets", metavar="CIDR,...", help="local networks where the log has no local_orig")
    cal.add_argument("--min-presence", type=float, default=0.2, help="share of time buckets a normal pattern fills")
    cal.add_argument("--until", metavar="TIME", help="use only connections before this time (epoch or ISO 8601)")
    cal.set_defaults(func=cmd_calibrate)

    watch = sub.add_parser(
        "watch",
        help="follow a live conn.log (or eve.json) through rotation, score it, append notices",
        description="Follow Zeek's live conn.log in PATH (a log directory such as logs/current, or the file) "
        "through rotation, truncation and restarts; score each connection exactly once and append notices. "
        "A checkpoint (default: OUTPUT.checkpoint.json) makes a restart resume where it stopped, kill -9 included.",
    )
    watch.add_argument("path", nargs="?", help="log directory (logs/current, a spool directory) or a live log file")
    watch.add_argument("-o", "--output", help="notice log to append to")
    watch.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="auto",
        help="notice log as Zeek TSV, Zeek JSON, or Suricata eve alert events; auto: as the live log is written "
        "(default: auto)",
    )
    watch.add_argument(
        "--json-ts",
        choices=JSON_TS_CHOICES,
        default="auto",
        help="time fields in JSON: epoch, iso8601 or millis; auto: as the live log (default: auto)",
    )
    watch.add_argument("-m", "--model", help="ONNX model (default: the shipped model)")
    watch.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    watch.add_argument("--all", metavar="FILE", help="also append every connection with its score")
    watch.add_argument(
        "--verdicts",
        metavar="FILE",
        help="also append each flagged connection to this verdict file, which the Zeek package (zeek_scripts/) "
        "follows with the Input framework to raise notices inside Zeek (append-only, never rotated)",
    )
    watch.add_argument("--rejects", metavar="FILE", help="append malformed lines here (JSON lines)")
    watch.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first malformed line (exit 4); the checkpoint stays before it",
    )
    watch.add_argument("--checkpoint", metavar="FILE", help="checkpoint file (default: OUTPUT.checkpoint.json)")
    watch.add_argument(
        "--rotated-dir",
        action="append",
        metavar="DIR",
        help="also look here for rotated files to catch up on after a restart (repeatable; the live file's "
        "directory and its log-queue/ are always searched)",
    )
    watch.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="fsync outputs and checkpoint at most this often under load (default: 1; 0: every batch)",
    )
    watch.add_argument(
        "--gather",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="once new lines arrive, wait up to this long for more and score them as one batch: less CPU, "
        "that much more latency (default: 0, at once; 0.02 halves the CPU at 10k conn/s)",
    )
    watch.add_argument(
        "--threads",
        type=_threads,
        default=default_threads(),
        metavar="N",
        help="2 or more: with --all the model runs in a thread of its own while the enriched lines are "
        "rendered, without it on a batch's parts in N threads (the same verdicts, sooner under load; "
        f"default: the cores this process may use, {default_threads()})",
    )
    watch.add_argument("--from-end", action="store_true", help="on a first start, skip the rows already written")
    watch.add_argument("--poll", action="store_true", help="no file-system events: poll (NFS and the like)")
    watch.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls (default: 1)")
    watch.add_argument("--batch-kib", type=int, default=4096, help="most log text per batch, KiB (default: 4096)")
    watch.add_argument("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics (HOST defaults to 127.0.0.1)")
    watch.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines on stderr")
    watch.add_argument("--exit-when-idle", type=float, metavar="SECONDS", help="stop after this long without new lines")
    watch.add_argument("--print-systemd-unit", action="store_true", help="print a systemd unit for this service")
    add_notice_options(watch)
    watch.set_defaults(func=cmd_watch)

    bk = sub.add_parser(
        "broker",
        help="score connections Zeek publishes over Broker, publish verdict events back",
        description="Receive ZeekML::conn_finished events (published by the Zeek package in zeek_scripts/), score "
        "them in batches and publish a ZeekML::verdict event per flagged connection, then a ZeekML::scored "
        "acknowledgment per batch. Listens on 127.0.0.1:9966 unless told otherwise. Needs Broker's Python "
        "bindings matching your Zeek (ZEEK_PYTHON_DIR, zeek-config --python_dir, or Debian's python3-broker).",
    )
    bk.add_argument("--listen", metavar="HOST:PORT", help="listen here for Zeek to peer (default: 127.0.0.1:9966)")
    bk.add_argument("--peer", metavar="HOST:PORT", help="peer with Zeek here instead (Broker::listen on the Zeek side)")
    bk.add_argument("--retry", type=float, default=5.0, help="seconds between peering retries (default: 5)")
    bk.add_argument("--conn-topic", default="zeek/ml/conn", help="topic to receive connections on")
    bk.add_argument("--verdict-topic", default="zeek/ml/verdict", help="topic to publish verdicts on")
    bk.add_argument("--ack-topic", default="zeek/ml/ack", help="topic to publish batch acknowledgments on")
    bk.add_argument("-m", "--model", help="ONNX model (default: the shipped model)")
    bk.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    bk.add_argument("--target-fpr", type=float, metavar="RATE", help="threshold for this benign FPR, from the card")
    bk.add_argument("-o", "--output", metavar="FILE", help="also write a notice log here")
    bk.add_argument("--format", choices=("tsv", "json"), default="tsv", help="--output format (default: tsv)")
    bk.add_argument("--batch-size", type=int, default=1000, help="most connections per scored batch (default: 1000)")
    bk.add_argument("--max-wait", type=float, default=0.5, help="seconds a partial batch waits (default: 0.5)")
    bk.add_argument(
        "--queue-size",
        type=int,
        default=100_000,
        help="most connections waiting to be scored; beyond, dropped and counted (default: 100000)",
    )
    bk.add_argument(
        "--outbox-size",
        type=int,
        default=100_000,
        help="most verdict events waiting for a peer; beyond, dropped and counted (default: 100000)",
    )
    bk.add_argument("--status-interval", type=float, default=60.0, help="seconds between status lines (default: 60)")
    bk.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines on stderr")
    bk.add_argument(
        "--state",
        metavar="FILE",
        help="keep the model's per-host context here across restarts (default: $ZEEK_ML_BROKER_STATE)",
    )
    bk.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics: counters, malformed events by kind, queue/outbox/backlog, lags "
        "(HOST defaults to 127.0.0.1)",
    )
    bk.set_defaults(func=cmd_broker)

    info = sub.add_parser("info", help="print a model's card: features, threshold, metrics, sha256")
    info.add_argument("model", nargs="?", help="ONNX model (default: the shipped model)")
    info.add_argument("--json", action="store_true", help="print the whole card as JSON")
    info.set_defaults(func=cmd_info)

    ev = sub.add_parser(
        "evaluate",
        help="measure a model on labelled conn logs: table, report.md/json, ROC/PR/confusion/importance PNGs",
        description="Score labelled conn logs (one file = one capture) and report accuracy, precision, recall, "
        "F1, ROC-AUC, PR-AUC, benign false-positive rate and notices per 1,000 benign connections, per file and "
        "pooled. PNG figures need matplotlib (pip install 'zeek-ml[report]').",
    )
    ev.add_argument("model", help="ONNX model")
    ev.add_argument("data", nargs="+", help="labelled conn logs")
    ev.add_argument("-o", "--out", default="zeek-ml-report", help="report folder (default: zeek-ml-report)")
    ev.add_argument("--threshold", type=float, help="score threshold (default: the model card's)")
    ev.add_argument("--target-fpr", type=float, metavar="RATE", help="threshold for this benign FPR, from the card")
    ev.add_argument("--label-column", default="label", help="label column (benign/normal/0 vs malicious/attack/1)")
    ev.add_argument("--detail-column", help="attack family column (default: detailedlabel, detailed-label, ...)")
    ev.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    ev.add_argument(
        "--threads",
        type=_threads,
        default=default_threads(),
        metavar="N",
        help="threads the model runs in (the same figures; default: the cores this process may use, "
        f"{default_threads()})",
    )
    ev.set_defaults(func=cmd_evaluate)

    train = sub.add_parser("train", help="train the CNN on labelled conn logs (needs the train extra)", add_help=False)
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=cmd_train)
    return parser


def signals_to_python() -> None:
    """Ctrl-C and SIGTERM always reach Python's handlers, never Arrow's.

    Around each ``read_csv``/``read_json`` pyarrow installs its own cancelling handler, which
    passes a signal through a self-pipe to a helper thread; a signal landing late in a read is
    dropped when that handler is removed again (9 of 200 single SIGINTs landing in a loop of
    reads were lost here): a stopped ``score -`` then waited for input forever. The reader parses
    a few MiB at a time, so cancelling one read gains nothing.
    """
    import pyarrow

    pyarrow.enable_signal_handlers(False)


def arrow_memory_to_the_system() -> None:
    """For ``score`` and ``evaluate``: Arrow allocates through the C library's malloc, which hands freed
    memory back, not through its own pool (mimalloc), which kept 40-60 MiB more of a run's batches
    resident at the same CPU (bench/README.md, "Issue 13, second slice"). Not for ``watch``: its many
    small batches were slower that way at 50k conn/s. ``ARROW_DEFAULT_MEMORY_POOL`` still decides
    where it is set."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())


def main(argv: Sequence[str] | None = None) -> int:
    signals_to_python()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and argv[1:2] != ["-h"]:
        # everything after `train` is zeek_ml.training.train's (argparse's REMAINDER stops at a leading option: --loco)
        args = argparse.Namespace(func=cmd_train, train_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except CliError as e:
        _say(_one_line(f"error: {e}"))
        return e.code
    except BrokenPipeError:  # `zeek-ml score ... -o - | head`: the reader had enough
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        files = [f for f in (getattr(args, n, None) for n in ("output", "all", "rejects")) if f and f != "-"]
        if files:  # those are written only by a run that ends: say so rather than exit 0
            _say(f"error: stdout was closed before the run ended (broken pipe); not written: {', '.join(files)}")
            return EXIT_INPUT
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # a file or directory we could not read or write: one line, naming it
        if getattr(args, "debug", False):
            raise
        where = f"{e.filename}: " if e.filename else ""
        _say(_one_line(f"error: {where}{e.strerror or e}"))
        return EXIT_INPUT
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        _say(_one_line(f"error: {type(e).__name__}: {e}") + " (run with --debug for the traceback)")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command. A stop that ``score``'s signal handlers remembered belongs to one command: none is
    left over from before (an earlier ``main()`` in this process, a stopped library call) or after it."""
    _forget_stop()
    try:
        return args.func(args)
    finally:
        _forget_stop()


def _forget_stop() -> None:
    files = sys.modules.get("zeek_ml.sources.files")  # not imported: nothing to forget (and --help stays quick)
    if files is not None:
        files.forget_stop()


def _one_line(message: str) -> str:
    """A message as one line (an exception's text may hold newlines)."""
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
