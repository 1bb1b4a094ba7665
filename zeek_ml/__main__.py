"""``python -m zeek_ml`` is the ``zeek-ml`` command."""

import sys

from zeek_ml.cli import main

if __name__ == "__main__":  # Dask's worker processes (spawn) import this module as __mp_main__
    sys.exit(main())
