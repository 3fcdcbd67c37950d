"""The one registry: a third-party plugin package (an installed distribution with a
``leakaudit.plugins`` entry point) adds a backend and an attack that ``leakaudit list`` shows and
an audit runs; a typo answers with the closest name; a broken plugin is reported, not fatal; every
builtin row imports and says what its class says."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leakaudit import registry
from leakaudit.cli import app
from leakaudit.registry.builtin import BUILTIN

from .conftest import TEXTS

PLUGIN_INIT = '''
"""A tiny leakaudit plugin: a backend that loads an HF model directory, two membership attacks."""
from leakaudit import registry

LOADS = []  # the specs the backend loaded


def register():
    registry.register("backends", "toy", "leakaudit_toy_plugin.backend:load_toy",
                      summary="an HF model directory, loaded through the toy plugin",
                      capabilities=("prompt_logprobs",), threat_model="white-box: toy",
                      reference="https://example.org/toy", scheme=True, world="llm")
    for name, cls in (("toy_mean", "ToyMean"), ("toy_negated", "ToyNegated")):
        registry.register("attacks", name, "leakaudit_toy_plugin.attack:" + cls,
                          summary="toy: mean token log-prob" + (", negated" if "neg" in name else ""),
                          capabilities=("prompt_logprobs",), threat_model="grey-box: toy",
                          reference="https://example.org/toy", family="membership", world="llm")
'''
PLUGIN_BACKEND = '''
from leakaudit_toy_plugin import LOADS


def load_toy(rest, *, name=None, device="cpu", dtype="float32", allow_download=False):
    from leakaudit.targets.hf import load_hf

    LOADS.append(rest)
    return load_hf(rest, name=name, device=device, dtype=dtype, allow_download=allow_download)
'''
PLUGIN_ATTACK = '''
import numpy as np

from leakaudit.attacks.membership.base import MembershipAttack, validated


@validated
class ToyMean(MembershipAttack):
    name = "toy_mean"
    kind = "llm"
    threat_model = "grey-box: toy"
    doc_uri = "https://example.org/toy"
    capabilities = ("prompt_logprobs",)

    def score(self, signals):
        return np.array([float(s.logprobs.mean()) for s in signals.target])


@validated
class ToyNegated(ToyMean):
    name = "toy_negated"

    def score(self, signals):
        return -super().score(signals)
'''


def _dist(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: NAME-0.1.dist-info/{METADATA,entry_points.txt}."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[leakaudit.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


@pytest.fixture(scope="module")
def plugin_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    pkg = root / "leakaudit_toy_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN_INIT)
    (pkg / "backend.py").write_text(PLUGIN_BACKEND)
    (pkg / "attack.py").write_text(PLUGIN_ATTACK)
    _dist(root, "leakaudit_toy_plugin", {"toy": "leakaudit_toy_plugin:register"})
    return root


def _fresh_registry(monkeypatch, *site: Path) -> None:
    """Only the builtins, the plugins on ``site`` read again at the next lookup; the test's
    entries vanish afterwards."""
    for d in site:
        monkeypatch.syspath_prepend(str(d))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry, "_ENTRIES", {k: {n: e for n, e in v.items() if e.source == "leakaudit"}
                                               for k, v in registry._ENTRIES.items()})
    monkeypatch.setattr(registry, "_LOADED", {})
    monkeypatch.setattr(registry, "_PLUGINS", {"loaded": False, "errors": [], "current": "runtime"})


@pytest.fixture
def with_plugin(plugin_root, monkeypatch):
    _fresh_registry(monkeypatch, plugin_root)
    plugin = importlib.import_module("leakaudit_toy_plugin")
    plugin.LOADS.clear()
    yield plugin


def test_the_plugin_adds_a_backend_and_attacks_that_list_shows(with_plugin):
    assert registry.entry("backends", "toy").source == "toy"
    assert registry.names("attacks", family="membership")[-2:] == ["toy_mean", "toy_negated"]
    r = CliRunner().invoke(app, ["list", "backends"])
    assert r.exit_code == 0, r.output
    assert "toy" in r.output and "(plugin toy)" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["list", "attacks", "--json"])
    attacks = {e["name"]: e for e in json.loads(r.output)["attacks"]}
    assert attacks["toy_mean"]["source"] == "toy" and attacks["loss"]["source"] == "leakaudit"
    assert attacks["toy_mean"]["target"] == "leakaudit_toy_plugin.attack:ToyMean"
    # listing imported nothing of the plugin beyond its registration function
    assert "leakaudit_toy_plugin.backend" not in sys.modules
    assert "leakaudit_toy_plugin.attack" not in sys.modules


def test_an_audit_runs_with_the_plugins_backend_and_attacks(with_plugin, tiny_model_dir, tmp_path):
    """The membership audit, through ``execute`` as the CLI runs it: the target comes from the
    plugin's ``toy:`` backend; ``toy_mean`` is the LOSS score, so its AUC equals LOSS's, and the
    negated score (the negative control) gives 1 − that."""
    from leakaudit.audits import membership
    from leakaudit.audits.base import execute

    texts = [f"Note {i}: {t}" for i, t in enumerate(TEXTS[:12])]
    members, nonmembers = texts[0::2], texts[1::2]
    for name, docs in (("m.jsonl", members), ("n.jsonl", nonmembers)):
        (tmp_path / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    req = membership.MembershipRequest(model=f"toy:{tiny_model_dir}", members=tmp_path / "m.jsonl",
                                       nonmembers=tmp_path / "n.jsonl",
                                       attacks=("loss", "toy_mean", "toy_negated"))
    out = tmp_path / "out"
    result, _ = execute(out, produces=("report.jsonl", "summary.json"), inputs=[],
                        prepare=lambda: membership.prepare(req),
                        run=lambda p, env: membership.run(p, req, env), formats=("jsonl",),
                        log=lambda m: None)
    assert with_plugin.LOADS == [str(tiny_model_dir)]
    rows = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    auc = {r["method"]: r["auc"] for r in rows if r["entry_type"] == "membership"}
    assert set(auc) == {"blind_baseline", "loss", "toy_mean", "toy_negated"}
    assert 0.0 < auc["loss"] < 1.0  # neither attack trivially perfect: the equalities below bite
    assert auc["toy_mean"] == pytest.approx(auc["loss"], abs=1e-12)
    assert auc["toy_negated"] == pytest.approx(1 - auc["loss"], abs=1e-12)
    assert result.run_record["config"]["attacks"] == ["loss", "toy_mean", "toy_negated"]


def test_a_typo_answers_with_the_closest_name(with_plugin, tmp_path):
    with pytest.raises(KeyError, match=r"unknown attack 'toy_maen'. Did you mean: toy_mean\?"):
        registry.entry("attacks", "toy_maen")
    with pytest.raises(registry.UnknownName, match=r"Did you mean: hf\?.*Available: .*toy"):
        registry.load("backends", "hff")
    from leakaudit.errors import InputError
    from leakaudit.targets import load_target

    with pytest.raises(InputError, match=r"unknown target scheme 'toyy:'.*Did you mean: toy:"):
        load_target("toyy:somewhere")
    r = CliRunner().invoke(app, ["list", "atacks"])
    assert r.exit_code == 2
    assert r.output.startswith("error: unknown kind 'atacks'. Did you mean: attacks?")
    from leakaudit.audits import membership

    (tmp_path / "m.jsonl").write_text('{"text": "a"}\n')
    req = membership.MembershipRequest(model="./x", members=tmp_path / "m.jsonl",
                                       nonmembers=tmp_path / "m.jsonl", attacks=("toy_maen",))
    with pytest.raises(registry.UnknownName, match="Did you mean: toy_mean"):
        membership.prepare(req)  # before any model is loaded
    assert with_plugin.LOADS == []


def test_a_broken_plugin_is_reported_not_fatal(plugin_root, tmp_path, monkeypatch):
    bad = tmp_path / "bad_site"
    bad.mkdir()
    (bad / "leakaudit_bad_plugin.py").write_text("raise ImportError('no module named torchx')\n")
    (bad / "leakaudit_clash_plugin.py").write_text(
        "from leakaudit import registry\n"
        "registry.register('backends', 'hf', 'os:getcwd', summary='steals hf')\n")
    _dist(bad, "leakaudit_bad_plugin", {"bad": "leakaudit_bad_plugin",
                                        "clash": "leakaudit_clash_plugin"})
    _fresh_registry(monkeypatch, plugin_root, bad)
    with pytest.warns(RuntimeWarning) as seen:
        names = registry.names("backends")
    assert "toy" in names and "hf" in names  # the good plugin and the builtins still there
    assert registry.entry("backends", "hf").source == "leakaudit"  # not shadowed
    msgs = sorted(str(w.message) for w in seen)
    assert len(msgs) == 2
    assert msgs[0].startswith("leakaudit plugin 'bad' (leakaudit_bad_plugin) could not be loaded: "
                              "ImportError: no module named torchx")
    assert msgs[1].startswith("leakaudit plugin 'clash' (leakaudit_clash_plugin) could not be "
                              "loaded: ValueError: backend 'hf' is already registered")
    r = CliRunner().invoke(app, ["list", "backends"])
    assert r.exit_code == 0 and "warning: leakaudit plugin 'bad'" in r.output


def test_without_plugins_nothing_is_added(monkeypatch):
    """Negative control: a plain environment has only the builtin rows."""
    _fresh_registry(monkeypatch)
    for kind, rows in BUILTIN.items():
        assert registry.names(kind) == [r[0] for r in rows]


ROWS = [(kind, row[0]) for kind, rows in BUILTIN.items() for row in rows]


@pytest.mark.parametrize("kind,name", ROWS, ids=[f"{k}:{n}" for k, n in ROWS])
def test_every_builtin_row_imports_and_says_what_its_object_says(kind, name):
    e = registry.entry(kind, name)
    obj = e.load()
    assert e.summary and e.source == "leakaudit" and e.reference.startswith("https://") \
        or kind == "audits"
    if kind == "attacks":
        assert obj.name == name and obj.threat_model == e.threat_model
        assert obj.doc_uri == e.reference
        assert tuple(getattr(obj, "capabilities", ())) in ((), e.capabilities) or \
            e.meta["family"] != "membership"
        if e.meta["family"] == "membership":
            assert obj.kind == e.meta["world"] and tuple(obj.capabilities) == e.capabilities
            assert tuple(obj.needs) == tuple(e.meta["needs"])
    elif kind == "dp-auditors":
        from leakaudit.attacks.dp_audit.auditors import DPAuditor

        assert issubclass(obj, DPAuditor) and obj.name == name and obj.reference == e.reference
    elif kind == "audits":
        assert obj.__name__ == e.target and obj.__doc__
    else:
        assert callable(obj)
    if kind == "defenses":
        assert e.produces in registry.DEFENSE_PRODUCTS


def test_defenses_say_what_they_produce():
    produces = {e.name: e.produces for e in registry.entries("defenses")}
    assert produces["dedup"] == produces["scrub"] == "corpus"
    assert produces["dp-sgd"] == "training"
    assert produces["memfree"] == produces["output-filter"] == produces["label-only"] == "decoding"
    assert produces["sisa"] == produces["unlearn-npo"] == produces["retrain"] == "weights"
    with pytest.raises(ValueError, match="produces must be one of corpus, training, decoding"):
        registry.register("defenses", "x-test", "os:getcwd", summary="x", produces="model")


def test_list_backends_without_torch():
    import leakaudit

    src = str(Path(leakaudit.__file__).resolve().parents[1])
    code = ("import sys, json\nfrom leakaudit.cli import app\n"
            "try:\n    app(['list', '--json'], prog_name='leakaudit')\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": src})
    assert r.stderr.strip().endswith("TORCH False"), r.stderr
    backends = [e["name"] for e in json.loads(r.stdout)["backends"]]
    assert backends[:6] == ["hf", "gguf", "sisa", "peft", "openai-completions", "openai-chat"]
    assert {"torch-classifier", "sklearn-classifier", "http-classifier"} <= set(backends)
    assert set(json.loads(r.stdout)) == set(registry.KINDS)
