"""``leakaudit lab after-training`` on a finished (tiny) lab: the output filter with its
bypasses and the erasure of one data subject run end to end from the CLI, into the lab folder,
and a rerun reuses the finished unlearning. (The effects themselves, on a model that memorizes,
are asserted in ``test_defenses_lab_slow.py``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(*args):
    return subprocess.run([sys.executable, "-c", "from leakaudit.cli import main; main()",
                           *map(str, args)], env=ENV, capture_output=True, text=True, timeout=900)


def test_after_training_on_a_finished_lab(tmp_path):
    lab = tmp_path / "lab"
    # refused before any work on a folder that holds no lab
    r = _run("lab", "after-training", "--out", tmp_path / "nothing")
    assert r.returncode == 2 and "not a finished lab" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nothing").exists()

    r = _run("lab", "--tiny", "--out", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run("lab", "after-training", "--out", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    man = json.loads((lab / "corpus" / "manifest.json").read_text())
    secrets = [c["secret"] for c in man["canaries"]]

    of = [json.loads(x) for x in (lab / "output-filter" / "report.jsonl").read_text().splitlines()]
    rates = [x for x in of if x.get("entry_type") == "output_filter" and x.get("kind") == "rate"]
    assert {x["variant"] for x in rates} == {"unfiltered", "memfree"}
    # the filter's guarantee: no filtered output holds a training n-gram of its length
    assert all(x["k"] == 0 for x in rates if x["variant"] == "memfree"
               and x["measure"] == "filter_ngram")

    meta = json.loads((lab / "erasure" / "unlearn" / "unlearn.json").read_text())
    assert set(meta["methods"]) == {"ga", "gd", "npo", "oracle", "sisa"}
    # the forget set: one recurring data subject's documents (at least 8), not a canary's copies
    forget = set(meta["forget_ids"])
    subject = next(s for s in man["recurring_subjects"] if set(s["doc_ids"]) == forget)
    assert len(forget) >= 8 and subject["repeats"] >= 8
    assert 1 <= len(meta["methods"]["sisa"]["retrained_shards"]) <= 2
    recs = [json.loads(x) for x in
            (lab / "erasure" / "report" / "report.jsonl").read_text().splitlines()]
    er = {x["model"]: x for x in recs if x.get("entry_type") == "erasure"}
    assert {"original", "oracle", "sisa", "ga", "gd", "npo", "ga+int8", "npo+finetune"} <= set(er)
    assert er["oracle"]["n_forget"] == len(forget) and er["oracle"]["vs_oracle"] is None
    assert all(x["vs_oracle"]["verdict"] in ("as the oracle", "retained", "over-forgotten")
               for m, x in er.items() if m != "oracle")
    # the subject's phone (or e-mail) in each of their documents is a secret to extract
    assert er["oracle"]["secret_extraction"]["n"] >= 8
    html = (lab / "erasure" / "report" / "report.html").read_text()
    assert "Erasure (right to be forgotten)" in html and "the oracle (the yardstick)" in html
    for p in [*(lab / "output-filter").rglob("*"), *(lab / "erasure").rglob("*")]:
        assert os.lstat(p).st_mode & 0o077 == 0, p  # private by default
    for name in ("report.jsonl", "report.html"):  # no raw secret in the reports
        for d in (lab / "output-filter", lab / "erasure" / "report"):
            text = (d / name).read_text()
            assert not [s for s in secrets if s in text], (d / name)

    r = _run("lab", "after-training", "--out", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reused finished stage unlearn" in r.stdout + r.stderr
