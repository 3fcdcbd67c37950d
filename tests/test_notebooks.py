"""The docs' example notebooks (jupytext percent files: plain Python) run end to end on the
tiny lab's models (the lab's every stage at the smallest sizes), as a user would run them with ``LEAKAUDIT_LAB`` set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("*.py"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_lab(nb, tiny_lab, tmp_path):
    out, _, _ = tiny_lab
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "LEAKAUDIT_LAB": str(out), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(nb)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.listdir(tmp_path) == []  # the API wrote nothing without out=
    assert r.stdout.strip(), "the notebook printed nothing"
