"""The house rule: one folder per stage of the data flow, imports only go down, no import cycles.

import-linter checks the contracts in pyproject.toml (``[tool.importlinter]``) over every import
(function-level and ``TYPE_CHECKING`` ones included). The other tests make sure that the contracts
name every stage folder and that the README's architecture tree is the package's tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zeek_ml"


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_imports_only_go_down_and_never_in_a_circle() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout, run.stdout[-2000:]


def test_the_contracts_name_every_stage_folder() -> None:
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = {m.strip().removeprefix("zeek_ml.") for layer in layers for m in layer.split("|")}
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    assert stages <= named, f"stage folders missing from the layers contract: {sorted(stages - named)}"
    assert modules - named <= set(), f"top-level modules outside the layers: {sorted(modules - named)}"


def test_every_stage_says_what_it_owns_and_may_import() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        text = init.read_text()
        assert text.startswith('"""'), f"{init}: no docstring"
        assert "May import" in text, f"{init}: the docstring does not say what the stage may import"


def _drawn_tree(block: str) -> set[str]:
    """The paths a README tree draws: ``dir/`` lines open a folder, ``name.py`` words are files in it."""
    paths: set[str] = set()
    stack: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        words = line.split()
        stack = stack[:depth]
        if words[0].endswith("/"):
            stack.append(words[0].rstrip("/"))
            paths.add("/".join(stack) + "/")
            continue
        for word in words:
            if not word.endswith(".py"):
                break
            paths.add("/".join([*stack, word]))
    return paths


def test_readme_draws_the_same_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tree -->\n```text\n(.*?)```", readme, re.S)
    assert block, "README: no architecture tree (a ```text block after <!-- tree -->)"
    actual = {"zeek_ml/"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py":
            actual.add(f"{rel.parent}/")
        elif not path.name.startswith("_"):
            actual.add(str(rel))
    drawn = _drawn_tree(block.group(1))
    assert drawn == actual, (
        f"README tree differs: not drawn {sorted(actual - drawn)}, not there {sorted(drawn - actual)}"
    )
