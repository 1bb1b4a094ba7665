"""``python -m zeek_ml`` is the ``zeek-ml`` command."""

import sys

from zeek_ml.cli import main

if __name__ == "__main__":  # Dask's worker processes (spawn) import this module as __mp_main__
    try:
        code = main()
    finally:  # also when main() ends with SystemExit (SIGTERM: 143)
        # CPython (3.8 to 3.13 at least) remembers a KeyboardInterrupt that ended code run from a string
        # (`exec`/`eval` of source: numba, dataclasses and namedtuple build functions that way), even one
        # caught later, and under `python -m` then ends the process with SIGINT whatever exit code it was
        # given: a Ctrl-C'd `score` that cleaned up and returned 130 was reported as killed (-2), 1 run in
        # 40. Running a string resets that flag; a real unhandled Ctrl-C does not come back here.
        exec("")
    sys.exit(code)
