"""``zeek-ml watch --print-systemd-unit``: the shipped unit, pointed at this installation's entry point."""

from __future__ import annotations

import os
import shutil
import sys
from importlib.resources import files
from pathlib import Path

__all__ = ["entry_point", "systemd_unit"]

TEMPLATE = "zeek-ml-watch.service"
PLACEHOLDER = "@ZEEK_ML@"
"""Where the template's ``ExecStart`` names the command."""

_HOME_DIRS = ("/home/", "/root/", "/run/user/")
"""``ProtectHome=yes`` hides these: an entry point there needs ``ProtectHome=read-only``."""


def entry_point() -> list[str]:
    """The command that runs this zeek-ml: the ``zeek-ml`` script this process was started as (a
    venv's or pipx's included), else the one installed beside this interpreter or in the user base
    (``pip install --user``), else the one on PATH, else this interpreter with ``-m zeek_ml``.

    The interpreter is not resolved: a venv's ``bin/python`` is a link whose target lacks the venv.
    """
    started_as = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started_as is not None and started_as.name.startswith("zeek-ml") and started_as.is_file():
        return [str(started_as.resolve())]
    import site

    beside = [Path(sys.executable).parent, Path(site.getuserbase()) / "bin"]  # this environment's, --user's
    for script in [*(d / "zeek-ml" for d in beside), shutil.which("zeek-ml")]:
        if script and os.access(script, os.X_OK) and Path(script).is_file():
            return [str(Path(script).resolve())]
    return [os.path.abspath(sys.executable), "-m", "zeek_ml"]


def _quote(word: str) -> str:
    """A word of a systemd command line (double quotes where it holds blanks or quotes)."""
    if word and not any(c in word for c in " \t\"'\\"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(command: list[str] | None = None) -> str:
    """The unit text with ``ExecStart`` running ``command`` (default: :func:`entry_point`)."""
    command = command if command is not None else entry_point()
    text = files("zeek_ml.services.watch").joinpath(TEMPLATE).read_text()
    text = text.replace(PLACEHOLDER, " ".join(_quote(w) for w in command))
    if command[0].startswith(_HOME_DIRS):
        text = text.replace("ProtectHome=yes", "ProtectHome=read-only")
    return text
