"""Find and import Broker's Python bindings (the only place zeek-ml imports ``broker``).

The bindings must match the Zeek they talk to, so they come with Zeek rather
than from PyPI. Looked for, in order: ``$ZEEK_PYTHON_DIR``; ``zeek-config
--python_dir``; Debian's ``python3-broker`` (``/usr/lib/python3/dist-packages``).
A directory found is appended to the *end* of ``sys.path``, so the packages
already importable (ours, pandas, numpy...) are never shadowed by the system's.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from types import ModuleType

DEBIAN_DIR = "/usr/lib/python3/dist-packages"


class BrokerUnavailable(ImportError):
    """Broker's Python bindings were not found; the message says where we looked and how to get them."""


def candidate_dirs() -> list[str]:
    """Where the bindings may be, in the order tried."""
    dirs: list[str] = []
    env = os.environ.get("ZEEK_PYTHON_DIR")
    if env:
        dirs.append(env)
    zeek_config = shutil.which("zeek-config")
    if zeek_config:
        try:
            out = subprocess.run([zeek_config, "--python_dir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                dirs.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    dirs.append(DEBIAN_DIR)
    return dirs


_broker: ModuleType | None = None


def import_broker() -> ModuleType:
    """The ``broker`` module (with ``broker.zeek`` loaded); raises :class:`BrokerUnavailable`."""
    global _broker
    if _broker is not None:
        return _broker
    errors: list[str] = []
    try:  # already importable (a venv with Zeek's python dir on PYTHONPATH)
        module = importlib.import_module("broker")
        importlib.import_module("broker.zeek")
        _broker = module
        return module
    except ImportError as e:
        errors.append(f"sys.path: {e}")
    for directory in candidate_dirs():
        if not os.path.isdir(os.path.join(directory, "broker")):
            errors.append(f"{directory}: no broker package")
            continue
        if directory not in sys.path:
            sys.path.append(directory)
        sys.modules.pop("broker", None)
        try:
            module = importlib.import_module("broker")
            importlib.import_module("broker.zeek")
        except ImportError as e:
            errors.append(f"{directory}: {e}")
            continue
        _broker = module
        return module
    raise BrokerUnavailable(
        "Broker's Python bindings not found ("
        + "; ".join(errors)
        + "). They ship with Zeek: set ZEEK_PYTHON_DIR to the output of `zeek-config --python_dir`, "
        "or on Debian/Ubuntu `apt-get install python3-broker` (Broker 1.4: fine between zeek-ml endpoints, "
        "cannot peer with Zeek 7 and later)."
    )


def broker_version(broker: ModuleType) -> str:
    """``1.4.0``, ``2.8.0``... of the imported bindings."""
    version = broker.Version
    return f"{version.MAJOR}.{version.MINOR}.{version.PATCH}"
