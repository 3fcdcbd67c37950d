"""Sharded execution: deterministic shards, resume from the shard store, Ray equal to in-process."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from leakaudit.errors import InputError
from leakaudit.exec import LocalExecutor, ShardStore, get_executor, shard_key, shard_seed
from leakaudit.exec.audits import sharded_extraction, sharded_membership, sharded_memorization
from tests.membership_fixtures import train_leaky_lms


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    d = tmp_path_factory.mktemp("leaky")
    _, _, members, nonmembers = train_leaky_lms(d, n=24)
    return d, members, nonmembers


def test_shard_seed_and_key_depend_on_inputs_only():
    assert shard_seed(0, "extraction", "top_k", 0) == shard_seed(0, "extraction", "top_k", 0)
    seeds = {shard_seed(s, "extraction", "top_k", j) for s in (0, 1) for j in range(50)}
    assert len(seeds) == 100 and max(seeds) < 2**31
    assert shard_key("t", {"m": "a"}, {"x": 1}) == shard_key("t", {"m": "a"}, {"x": 1})
    assert shard_key("t", {"m": "a"}, {"x": 1}) != shard_key("t", {"m": "b"}, {"x": 1})


def test_membership_shards_resume_from_the_store(leaky, tmp_path):
    d, members, nonmembers = leaky
    store = ShardStore(tmp_path / "shards")
    ex = LocalExecutor()
    kw = dict(references={"reference": d / "reference"}, shard_size=8, batch_size=8)
    first = sharded_membership(d / "target", members, nonmembers, executor=ex, store=store, **kw)
    assert ex.stats == {"run": 6, "reused": 0} and len(store) == 6
    assert first["auc"]["loss"] > 0.8 and first["auc"]["reference:reference"] > 0.7  # it leaks
    for f in (tmp_path / "shards").iterdir():
        assert f.stat().st_mode & 0o777 == 0o600
    # a driver that died: some shards stored, one torn, two missing
    files = sorted((tmp_path / "shards").glob("*.json"))
    files[0].unlink()
    files[1].unlink()
    files[2].write_text('{"task": "membership", "res')
    ex2 = LocalExecutor()
    again = sharded_membership(d / "target", members, nonmembers, executor=ex2,
                               store=ShardStore(tmp_path / "shards"), **kw)
    assert ex2.stats == {"run": 3, "reused": 3}
    assert again == first
    # a different split of the same work gives the same scores (shards are independent)
    other = sharded_membership(d / "target", members, nonmembers, executor=LocalExecutor(),
                               **{**kw, "shard_size": 48})
    assert other["auc"] == first["auc"]


def test_cluster_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'leakaudit\[ray\]'"):
        get_executor("auto")
    assert isinstance(get_executor(None), LocalExecutor)


def _ext_cfg(**kw):
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig

    return ExtractionConfig(**{**dict(samplers=("top_k", "temperature"), n_samples=12,
                                      max_new_tokens=24, select=4, generate_batch_size=4,
                                      score_batch_size=4, match_tokens=4, seed=5,
                                      shard_samples=5), **kw})


def test_extraction_on_an_executor_equals_the_single_process_pipeline(leaky, tmp_path):
    """The same seed gives the same samples, scores, selections and verified findings whether
    extraction runs in one process (in-memory index) or as shard tasks (on-disk index)."""
    from leakaudit.attacks.extraction.pipeline import run_extraction
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.corpus.index_disk import DiskCorpusIndex
    from leakaudit.exec.audits import extraction_digest
    from leakaudit.runs.store import RunStore
    from leakaudit.targets.hf import HFCausalLM

    d, members, nonmembers = leaky
    ids = [f"m{i}" for i in range(len(members))]
    tgt = HFCausalLM.load(d / "target", name="target")
    refs = {"reference": HFCausalLM.load(d / "reference", name="reference")}
    canaries = [{"id": "c0", "kind": "text", "secret": members[0][:12], "repeats": 1}]
    plain_store = RunStore(tmp_path / "plain")
    plain = run_extraction(tgt, references=refs, index=CorpusIndex.build(members, ids),
                           config=_ext_cfg(), canaries=canaries, store=plain_store)
    disk = DiskCorpusIndex.build(members, tmp_path / "idx", ids)
    ex = LocalExecutor()
    sharded = run_extraction(tgt, references=refs, index=disk, config=_ext_cfg(),
                             canaries=canaries, store=RunStore(tmp_path / "sharded"), executor=ex)
    # a real effect: the leaky target reproduces training text the corpus confirms
    assert plain.summary["n_verified_samples"] >= 3
    for part in ("samples", "evals", "canaries", "pii", "summary"):
        assert getattr(sharded, part) == getattr(plain, part), part
    # 24 samples: 3+3 sampling shards (5, 5, 2 per sampler); scoring batches of 4, one per
    # shard (two exceed 5 texts), 6 per pass (target, lowercased, reference); 5 verification
    assert ex.stats == {"run": 6 + 3 * 6 + 5, "reused": 0}
    # the sampling shards are the very run-store stages of the single-process run
    assert sorted(s["key"] for s in plain_store.finished() if s["name"].startswith("samples-")) == \
        sorted(s["key"] for s in RunStore(tmp_path / "sharded").finished()
               if s["name"].startswith("samples-"))
    again = LocalExecutor()  # a driver that died after every shard: all reused, same findings
    resumed = run_extraction(tgt, references=refs, index=disk, config=_ext_cfg(),
                             canaries=canaries, store=RunStore(tmp_path / "sharded"), executor=again)
    assert again.stats == {"run": 0, "reused": 29} and resumed.samples == plain.samples
    # negative control: equality is not that of constant output (another seed, other findings)
    other = run_extraction(tgt, references=refs, index=disk, config=_ext_cfg(seed=6),
                           executor=LocalExecutor())
    assert extraction_digest(other)["text_sha256"] != extraction_digest(plain)["text_sha256"]


@pytest.mark.slow  # two extract runs (~17 s on 2 busy cores); the pipeline equality test is default
def test_extract_cli_cluster_local_writes_the_same_records(tiny_model_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from tests.conftest import TEXTS

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    args = ["extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--samples", "6",
            "--new-tokens", "8", "--select", "2", "--batch-size", "2", "--shard-samples", "4"]
    recs = {}
    for name, extra in (("plain", []), ("local", ["--cluster", "local"])):
        r = CliRunner().invoke(app, args + ["--out", str(tmp_path / name)] + extra)
        assert r.exit_code == 0, r.output
        recs[name] = [json.loads(x) for x in (tmp_path / name / "report.jsonl").read_text().splitlines()]
    assert "executor local: 13 shards run, 0 reused" in r.output

    def less_timings(rs):
        return [{k: v for k, v in x.items() if k not in ("timings_s", "started", "executor")}
                for x in rs]

    assert len(recs["plain"]) == len(recs["local"]) > 12
    assert less_timings(recs["plain"]) == less_timings(recs["local"])
    assert recs["local"][0]["executor"] == "local"
    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "ray"), "--cluster", "auto"])
    assert r.exit_code == 2 and "pip install 'leakaudit[ray]'" in r.output
    assert not (tmp_path / "ray").exists()  # refused before any work


def _shadow_setup(tmp, n_models=4, epochs=15):
    from leakaudit.attacks.membership.shadow import ShadowModels, TorchMLPTrainer
    from leakaudit.lab.digits import N_CLASSES, load_digits_data
    from leakaudit.training.classifier import MLPSpec, TrainConfig

    data = load_digits_data()
    x, y = data.x[:240], data.y[:240]  # small halves: each model overfits its own
    trainer = TorchMLPTrainer(MLPSpec(input_dim=64, n_classes=N_CLASSES, hidden=(64,)),
                              TrainConfig(epochs=epochs, lr=3e-3, batch_size=32, seed=3))
    return x, y, lambda d: ShadowModels(d, n_models=n_models, seed=3, trainer=trainer)


def test_shadow_models_on_an_executor_equal_the_in_process_ones(tmp_path):
    x, y, make = _shadow_setup(tmp_path)
    eligible = np.ones(len(y), bool)
    plain = make(tmp_path / "plain").train(x, y, eligible=eligible)
    sm = make(tmp_path / "sharded")
    ex = LocalExecutor()
    sharded = sm.train(x, y, eligible=eligible, executor=ex)
    assert ex.stats["run"] == 4 and sm.trained_now_ == 4
    assert np.array_equal(plain, sharded)  # bitwise: same rows, seeds and trainer
    for j in range(4):  # the same weights, stored the same way
        for f in ("model.safetensors", "classifier.json"):
            assert (tmp_path / "plain" / "models" / str(j) / f).read_bytes() == \
                (tmp_path / "sharded" / "models" / str(j) / f).read_bytes()
    # a real effect: each shadow model fits its own half better than the other half
    keep = sm.keep_
    acc_in = np.mean([(sharded[j][keep[j]].argmax(1) == y[keep[j]]).mean() for j in range(4)])
    acc_out = np.mean([(sharded[j][~keep[j]].argmax(1) == y[~keep[j]]).mean() for j in range(4)])
    assert acc_in > acc_out + 0.03 and acc_out > 0.5
    # a driver that died after three models: the rerun trains only the missing one
    (tmp_path / "sharded" / "outputs" / "2.npy").unlink()
    sm2 = make(tmp_path / "sharded")
    again = sm2.train(x, y, eligible=eligible, executor=LocalExecutor())
    assert sm2.trained_now_ == 1 and np.array_equal(again, plain)
    # negative control: another seed trains other models
    other = make(tmp_path / "other")
    other.seed, other.n_models = 4, 2
    assert not np.array_equal(other.train(x, y, eligible=eligible, executor=LocalExecutor()),
                              plain[:2])


def test_memorization_cli_cluster_local_writes_the_same_records(leaky, tmp_path):
    """The teacher-forced passes as shard tasks (same batches) give the same records (the
    per-window log-probabilities included), for a target and a reference model."""
    from typer.testing import CliRunner

    from leakaudit.cli import app

    d, members, _ = leaky
    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"m{i}", "text": t}) + "\n"
                              for i, t in enumerate(members)))
    args = ["memorization", "--model", str(d / "target"), "--model", str(d / "reference"),
            "--corpus", str(corpus), "--prefix", "4,8", "--suffix", "6", "--sequences", "24",
            "--greedy-check", "4", "--batch-size", "5"]
    recs = {}
    for name, extra in (("plain", []), ("local", ["--cluster", "local"])):
        r = CliRunner().invoke(app, args + ["--out", str(tmp_path / name)] + extra)
        assert r.exit_code == 0, r.output
        recs[name] = [{k: v for k, v in json.loads(x).items() if k not in ("started", "executor")}
                      for x in (tmp_path / name / "report.jsonl").read_text().splitlines()]
    # 2 models x 2 prefix lengths x 2 shards (5 batches of <= 5 windows, 4 batches a shard)
    assert "executor local: 8 shards run" in r.output, r.output
    assert recs["plain"] == recs["local"]
    # a real effect: the target gives its training windows' suffixes more probability than the
    # reference (trained on other documents of the same generator) does, window by window
    lp = {m: np.array([x["suffix_logprob"] for x in recs["local"]
                       if x.get("kind") == "sequence" and x["model"] == m and x["k"] == 8])
          for m in ("target", "reference")}
    assert len(lp["target"]) == 24
    assert lp["target"].mean() > lp["reference"].mean() + 0.3
    assert (lp["target"] > lp["reference"]).mean() > 0.6


def test_membership_llm_cli_cluster_local_writes_the_same_records(leaky, tmp_path, monkeypatch):
    """LLM membership's teacher-forced passes (target with Min-K%++'s vocabulary statistics,
    lowercased, a reference) as shard tasks in the same batches: the same records as one
    process, less timings and the run record's executor."""
    from typer.testing import CliRunner

    from leakaudit.cli import app

    d, members, nonmembers = leaky
    for name, docs in (("members", members), ("nonmembers", nonmembers)):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": f"{name[0]}{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    args = ["membership", "llm", "--model", str(d / "target"), "--reference", str(d / "reference"),
            "--members", str(tmp_path / "members.jsonl"), "--nonmembers",
            str(tmp_path / "nonmembers.jsonl"), "--batch-size", "8"]

    def less_timings(x):
        x = {k: v for k, v in x.items() if k not in ("started", "executor")}
        if isinstance(x.get("cost"), dict):
            x["cost"] = {k: v for k, v in x["cost"].items() if not k.endswith("_s")}
        return x

    recs = {}
    for name, extra in (("plain", []), ("local", ["--cluster", "local"])):
        r = CliRunner().invoke(app, args + ["--out", str(tmp_path / name)] + extra)
        assert r.exit_code == 0, r.output
        recs[name] = [json.loads(x) for x in (tmp_path / name / "report.jsonl").read_text().splitlines()]
    # 48 texts in 6 batches of 8, 4 batches a shard: 2 shards for each of the 3 passes
    assert "executor local: 6 shards run, 0 reused" in r.output, r.output
    assert recs["local"][0]["executor"] == "local" and "executor" not in recs["plain"][0]
    assert [less_timings(x) for x in recs["plain"]] == [less_timings(x) for x in recs["local"]]
    # a real effect, so equality is not that of empty results: every attack ran, the leaky
    # target's members score higher (Min-K%++ from the shipped vocabulary statistics)
    evs = {x["method"]: x for x in recs["local"]
           if x.get("entry_type") == "membership" and not x.get("baseline") and "auc" in x}
    assert {"loss", "zlib", "lowercase", "reference", "min_k", "min_k_pp"} <= set(evs), set(evs)
    assert evs["loss"]["auc"] > 0.8 and evs["min_k_pp"]["auc"] > 0.6
    assert len({x["auc"] for x in evs.values()}) > 2
    # without Ray, --cluster auto refuses at once, in one line, before any output
    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "ray"), "--cluster", "auto"])
    assert r.exit_code == 2 and "pip install 'leakaudit[ray]'" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "ray").exists()
    r = CliRunner().invoke(app, ["membership", "scores", str(tmp_path / "members.jsonl"),
                                 "--out", str(tmp_path / "x"), "--cluster", "local"])
    assert r.exit_code == 2 and "No such option: --cluster" in r.output  # scores run in this process


@pytest.mark.slow  # two membership runs with 4 reference models each (~20-60 s on 2 busy cores)
def test_membership_cli_cluster_local_trains_the_same_reference_models(tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.training.classifier import MLPSpec, TrainConfig, save_classifier, train_classifier

    p = split_digits(load_digits_data(), {"m": 0.2, "n": 0.2, "pop": 0.6}, seed=0)
    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(64,))
    save_classifier(train_classifier(p["m"].x, p["m"].y, spec, TrainConfig(epochs=60, seed=0)),
                    spec, tmp_path / "clf")
    np.savez(tmp_path / "data.npz", x_members=p["m"].x, y_members=p["m"].y,
             x_nonmembers=p["n"].x, y_nonmembers=p["n"].y, x_population=p["pop"].x,
             y_population=p["pop"].y)
    args = ["membership", "classifier", str(tmp_path / "clf"), "--data", str(tmp_path / "data.npz"),
            "--shadows", "4", "--epochs", "30"]
    recs = {}
    for name, extra in (("plain", []), ("local", ["--cluster", "local"])):
        r = CliRunner().invoke(app, args + ["--out", str(tmp_path / name)] + extra)
        assert r.exit_code == 0, r.output
        recs[name] = [{k: v for k, v in json.loads(x).items() if k not in ("started", "executor")}
                      for x in (tmp_path / name / "report.jsonl").read_text().splitlines()]
    assert recs["plain"] == recs["local"]
    evs = {x["label"]: x for x in recs["local"] if x.get("entry_type") == "membership"}
    assert evs["lira-offline-fixed-var"]["auc"] > 0.55  # the overfit target leaks
    for j in range(4):
        assert (tmp_path / "plain" / "shadows" / "outputs" / f"{j}.npy").read_bytes() == \
            (tmp_path / "local" / "shadows" / "outputs" / f"{j}.npy").read_bytes()
    r = CliRunner().invoke(app, ["membership", "scores", str(tmp_path / "data.npz"), "--out",
                                 str(tmp_path / "x"), "--cluster", "local"])
    assert r.exit_code == 2 and "No such option: --cluster" in r.output  # scores run in this process


def _audits(d, members, nonmembers, idx_dir, executor, store_root=None, shadow_dir=None):
    from leakaudit.attacks.memorization import MemorizationConfig
    from leakaudit.corpus.index_disk import DiskCorpusIndex

    def st(name):
        return ShardStore(store_root / name) if store_root else None

    ecfg = _audit_ext_cfg()
    ext = sharded_extraction(d / "target", executor=executor, config=ecfg,
                             references={"reference": d / "reference"}, index_dir=idx_dir,
                             store=st("extraction"), shard_size=4, keep_result=True)
    res = ext.pop("result")
    ext["samples"] = res.samples  # the full records, which must be equal too
    mcfg = MemorizationConfig(prefix_lengths=(4, 8), suffix_length=6, n_sequences=24,
                              greedy_check=0, batch_size=8, seed=1)
    mem = sharded_memorization({"target": d / "target", "reference": d / "reference"}, members,
                               [f"m{i}" for i in range(len(members))], DiskCorpusIndex.open(idx_dir),
                               executor=executor, config=mcfg, shard_size=8, store=st("mem"))
    mia = sharded_membership(d / "target", members, nonmembers, executor=executor,
                             references={"reference": d / "reference"}, shard_size=8,
                             store=st("mia"))
    out = {"extraction": ext, "memorization": mem, "membership": mia,
           "membership_llm": _llm_membership_digest(d, members, nonmembers, executor)}
    if shadow_dir is not None:  # classifier shadow models, one task each
        import hashlib

        x, y, make = _shadow_setup(shadow_dir)
        sm = make(shadow_dir)
        outs = sm.train(x, y, eligible=np.ones(len(y), bool), executor=executor)
        out["shadows"] = {"outputs": hashlib.sha256(outs.tobytes()).hexdigest(),
                          "weights": [hashlib.sha256((shadow_dir / "models" / str(j) /
                                                      "model.safetensors").read_bytes()).hexdigest()
                                      for j in range(sm.n_models)]}
    return out


def _llm_membership_digest(d, members, nonmembers, executor):
    """``membership llm``'s audit with its passes on ``executor``: every pass's raw arrays
    (hashed, bitwise) and each attack's AUC."""
    import hashlib

    from leakaudit.attacks.membership.audit_llm import audit_llm_membership
    from leakaudit.exec.tasks import worker_model

    t0 = time.perf_counter()
    a = audit_llm_membership(worker_model(str(d / "target")),
                             {"reference": worker_model(str(d / "reference"))}, members, nonmembers,
                             batch_size=8, executor=executor, log=lambda m: None)
    print(f"llm membership on {executor.name}: {time.perf_counter() - t0:.1f} s")
    h = hashlib.sha256()
    passes = [a.signals.target, a.signals.lowercase, *a.signals.references.values()]
    for sc in (s for p in passes for s in p):
        for arr in (sc.token_ids, sc.logprobs, sc.is_argmax, sc.vocab_mean, sc.vocab_var):
            h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
    return {"passes_sha256": h.hexdigest(), "n_vocab_stats": sum(s.vocab_mean is not None
                                                                  for s in a.signals.target),
            "auc": {f"{e.method}/{e.subset}": e.metrics.auc for e in a.evaluations}}


def _audit_ext_cfg():
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig

    return ExtractionConfig(samplers=("top_k", "temperature"), n_samples=12, max_new_tokens=24,
                            select=4, generate_batch_size=4, score_batch_size=4, match_tokens=4,
                            seed=5)


@pytest.mark.slow
def test_ray_cluster_matches_in_process_and_survives_a_killed_worker(leaky, tmp_path, monkeypatch,
                                                                     request):
    ray = pytest.importorskip("ray")
    import torch
    from ray.cluster_utils import Cluster

    # Ray workers compute with one torch thread (a task holds one CPU); so does the driver here,
    # since bitwise equality needs the same arithmetic
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(n_threads))

    from leakaudit.corpus.index_disk import DiskCorpusIndex
    from leakaudit.exec.ray_exec import RayExecutor

    d, members, nonmembers = leaky
    idx_dir = tmp_path / "index"
    DiskCorpusIndex.build(members, idx_dir, [f"m{i}" for i in range(len(members))])
    local = _audits(d, members, nonmembers, idx_dir, LocalExecutor(),
                    shadow_dir=tmp_path / "shadows-local")
    # the digest of the plain single-process pipeline (in-memory index) is the same
    from dataclasses import replace

    from leakaudit.attacks.extraction.pipeline import run_extraction
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.exec.audits import extraction_digest
    from leakaudit.exec.tasks import worker_model

    plain = run_extraction(worker_model(str(d / "target")),
                           references={"reference": worker_model(str(d / "reference"))},
                           index=CorpusIndex.build(members, [f"m{i}" for i in range(len(members))]),
                           config=replace(_audit_ext_cfg(), shard_samples=4))
    assert {**extraction_digest(plain), "samples": plain.samples} == local["extraction"]
    # a real effect, so equality is not equality of empty results
    assert local["extraction"]["verified"]
    # greedy suffix tokens far above chance (vocabulary of 300: chance ~0.003)
    assert local["memorization"]["n_windows"] == 24
    assert local["memorization"]["models"]["target"]["8"]["mean_token_accuracy"] > 0.2
    assert local["membership"]["auc"]["loss"] > 0.8
    assert local["membership_llm"]["auc"]["loss/all"] > 0.8
    assert local["membership_llm"]["n_vocab_stats"] == len(members) + len(nonmembers)

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    monkeypatch.setenv("LEAKAUDIT_EXEC_TEST_DIR", str(hooks))
    monkeypatch.setenv("LEAKAUDIT_EXEC_TEST_STALL_S", "30")
    monkeypatch.setenv("LEAKAUDIT_EXEC_TEST_STALL_SHARD", "extract_sample-1")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    killed: list[int] = []

    def killer():
        t0 = time.time()
        while time.time() - t0 < 1800:  # the cluster can take minutes to start on busy cores
            hits = list(hooks.glob("extract_sample-1-*.start"))
            if hits:
                pid = int(hits[0].stem.rsplit("-", 1)[1])
                time.sleep(0.5)  # well inside the shard's stall
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        ex = RayExecutor(address=cluster.address, max_retries=3)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3
        dist = _audits(d, members, nonmembers, idx_dir, ex, store_root=tmp_path / "store",
                       shadow_dir=tmp_path / "shadows-ray")
        ex.close()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    th.join(timeout=1)
    assert killed, "the worker running extraction shard 1 was not killed"
    starts = list(hooks.glob("extract_sample-1-*.start"))
    assert len(starts) >= 2  # the shard ran again after its worker died
    assert json.dumps(dist, sort_keys=True) == json.dumps(local, sort_keys=True)
    # every sampling shard stored exactly once, as the run-store stage a plain run writes
    from leakaudit.runs.store import RunStore

    names = [s["name"] for s in RunStore(tmp_path / "store" / "extraction").finished()]
    assert len(names) == len(set(names))
    assert len([n for n in names if n.startswith("samples-")]) == dist["extraction"]["n_shards"] == 6


def test_scale_extract_cli_runs_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from tests.conftest import TEXTS

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "run"
    args = ["scale", "extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--out",
            str(out), "--samples", "4", "--shard-size", "2", "--new-tokens", "8", "--select", "2",
            "--batch-size", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    f = json.loads((out / "findings.json").read_text())
    assert f["n_samples"] == 8 and f["n_shards"] == 4  # two samplers x two shards
    # 4 sampling, 4 + 4 scoring (target, lowercased; batches of 1, 2 per shard), 4 verification
    assert "16 shard tasks run, 0 reused" in r.output
    r = CliRunner().invoke(app, args)
    assert "0 shard tasks run, 16 reused" in r.output
    assert json.loads((out / "findings.json").read_text()) == f
    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(app, args + ["--cluster", "auto"])
    assert r.exit_code == 2 and "pip install 'leakaudit[ray]'" in r.output


class _FakeRay:
    """Records ``ray.init`` calls; ``running``: whether a cluster answers ``address=``. It has no
    ``ray._raylet``: a Ray without token authentication."""

    def __init__(self, running: bool):
        self.running, self.inits, self._up = running, [], False

    def is_initialized(self):
        return self._up

    def init(self, address=None, **kw):
        self.inits.append({"address": address, **kw})
        if address not in (None, "local") and not self.running:
            raise ConnectionError("no cluster")
        self._up = True

    def cluster_resources(self):
        return {"CPU": 1.0}

    def remote(self, **kw):
        return lambda fn: fn

    def shutdown(self):
        self._up = False


@pytest.mark.parametrize("address,running,starts", [
    ("auto", False, True),  # no cluster: leakaudit starts one
    ("local", False, True),
    ("auto", True, False),  # a running cluster is joined as it is, not reconfigured
    ("10.0.0.5:6379", True, False),
])
def test_a_ray_cluster_leakaudit_starts_has_no_open_dashboard(monkeypatch, recwarn, address,
                                                               running, starts):
    from leakaudit.exec.ray_exec import UNAUTHENTICATED, RayExecutor

    fake = _FakeRay(running)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray._raylet", None)  # even after a real Ray was imported
    RayExecutor(address=address).close()
    assert all(i["include_dashboard"] is False for i in fake.inits)
    started = [i for i in fake.inits if i["address"] is None]
    assert len(started) == starts
    assert all(i["dashboard_host"] == "127.0.0.1" for i in started)
    # a started cluster without token authentication says what that exposes
    assert [str(w.message) for w in recwarn] == [UNAUTHENTICATED] * starts


def test_a_real_local_ray_cluster_has_token_auth_and_no_dashboard(recwarn, monkeypatch):
    """A real local start (about 10 s): Ray's auth mode is token, and no dashboard listens."""
    monkeypatch.setenv("RAY_AUTH_MODE", "unset")  # Ray sets it: monkeypatch restores its absence
    monkeypatch.delenv("RAY_AUTH_MODE")
    ray = pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    from ray._raylet import AuthenticationMode, get_authentication_mode

    from leakaudit.exec.ray_exec import UNAUTHENTICATED, RayExecutor

    if ray.is_initialized():
        ray.shutdown()
    ex = RayExecutor(address="local", num_gpus_per_task=0)
    try:
        assert get_authentication_mode() == AuthenticationMode.TOKEN
        assert UNAUTHENTICATED not in [str(w.message) for w in recwarn]
        me = psutil.Process()
        ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
        ports = {c.laddr.port for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ours}
        assert ports and 8265 not in ports  # Ray listens, but not its dashboard
    finally:
        ex.close()
    assert not ray.is_initialized()


def test_cluster_help_names_the_ray_extra():
    from typer.testing import CliRunner

    from leakaudit.cli import app

    for cmd in (["extract"], ["memorization"], ["scale", "extract"], ["membership", "llm"]):
        r = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "400"},
                               terminal_width=400)
        assert r.exit_code == 0, r.output
        assert "pip install 'leakaudit[ray]'" in r.output, cmd  # not read as markup
