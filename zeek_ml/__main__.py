"""``python -m zeek_ml`` is the ``zeek-ml`` command."""

import sys

from zeek_ml.cli import main

sys.exit(main())
