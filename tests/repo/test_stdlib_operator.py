"""The top-level ``operator/`` folder must never shadow the standard library's ``operator``.

Python puts the working directory first on ``sys.path`` for ``-m`` and ``-c``, so a regular
package named ``operator`` at the repository root would replace the stdlib module for every
interpreter started there (``python3 -m venv`` then fails inside ``collections``). The folder
has no ``__init__.py``: it is only a namespace portion, which a real module always beats.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _interpreters() -> list[str]:
    """The test's own Python plus the system ones a user might run in the checkout."""
    found = {sys.executable}
    for name in ("/usr/bin/python3", shutil.which("python3")):
        if name and Path(name).exists():
            found.add(name)
    return sorted(found)


@pytest.mark.parametrize("python", _interpreters())
@pytest.mark.parametrize("flags", [["-S"], ["-I"], []], ids=["no-site", "isolated", "plain"])
def test_stdlib_operator_wins_at_the_repo_root(python: str, flags: list[str]) -> None:
    probe = "import operator, collections, sys; print(operator.__file__); operator.eq(1, 1)"
    out = subprocess.run(
        [python, *flags, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    origin = Path(out.stdout.strip())
    assert REPO not in origin.parents, f"{python} imported {origin} as the stdlib operator"


def test_no_regular_package_named_operator_at_the_root() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()


def test_venv_can_be_made_from_the_repo_root(tmp_path: Path) -> None:
    # The README's first step: `python3 -m venv` imports collections, which imports operator.
    out = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "venv" / "bin" / "python").exists()


def test_package_still_imports_as_simdev_operator() -> None:
    import simdev.operator.model as model

    assert Path(model.__file__).parent == REPO / "operator"
