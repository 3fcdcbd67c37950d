"""The LLM membership lab (``llm_lab_membership``) with non-members of the same generator.

Documents: the model-free baseline stays near chance. Canaries repeated >= 16 times are detected
far above chance at 1% FPR against same-template sentences with other secrets.
"""

import pytest

from leakaudit.attacks.membership.evaluate import EvalConfig


@pytest.mark.slow
def test_llm_lab_membership_canaries_and_blind_baseline(tmp_path):
    from leakaudit.corpus.pii import mask_text
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.audits.lab_membership import llm_lab_membership
    from leakaudit.lab.run import LabConfig
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import train_causal_lm, train_tokenizer

    cfg = LabConfig.quick()
    corpus = generate_lab_corpus(LabCorpusConfig(n_docs=cfg.n_docs, n_heldout=cfg.n_heldout,
                                                 seed=cfg.seed, canary_repeats=cfg.canary_repeats,
                                                 boilerplate_repeats=cfg.boilerplate_repeats,
                                                 subject_repeats=cfg.subject_repeats,
                                                 subjects_per_repeat=cfg.subjects_per_repeat))
    train = [d["text"] for d in corpus.train]
    held = [d["text"] for d in corpus.heldout]
    tok = train_tokenizer(train, vocab_size=cfg.vocab_size)
    train_causal_lm(train, tok, cfg.target, seed=0, out_dir=tmp_path / "target")
    train_causal_lm(held, tok, cfg.reference, seed=1, out_dir=tmp_path / "reference")
    target = HFCausalLM.load(tmp_path / "target", name="target")
    reference = HFCausalLM.load(tmp_path / "reference", name="reference")
    res = llm_lab_membership(target, {"reference": reference}, corpus, k=0.2,
                             n_reference_secrets=20, heavy_repeats=16, seed=0,
                             eval_config=EvalConfig(n_boot=300), cache_dir=tmp_path / "cache",
                             log=print)
    for audit in (res.documents, res.canaries):
        for name, b in audit.baseline.items():
            print(name, "| blind", round(b.metrics.auc, 3), b.metrics.auc_ci)
        for e in audit.evaluations:
            print(e.subset, "|", e.label, round(e.metrics.auc, 3), e.metrics.tpr(0.01).label())
    # same-distribution documents: the blind baseline is near chance, its CI covers 0.5
    blind = next(iter(res.documents.baseline.values())).metrics
    assert blind.auc_ci[0] < 0.5 < blind.auc_ci[1] or abs(blind.auc - 0.5) < 0.08
    # canaries repeated >= 16 times: detected far above 1% TPR at 1% FPR (resolvable: 360 refs)
    heavy = [e for e in res.canaries.evaluations if e.subset == "canaries x>=16"]
    best = max(heavy, key=lambda e: e.metrics.tpr(0.01).tpr)
    assert best.metrics.tpr(0.01).resolvable and best.metrics.tpr(0.01).tpr >= 0.5
    cblind = res.canaries.baseline["canaries x>=16"].metrics
    assert cblind.tpr(0.01).tpr < best.metrics.tpr(0.01).tpr
    # PII is masked in the exposed-record table: masking again changes nothing
    texts = [r["text"] for k, r in res.records() if k == "membership_record"]
    assert texts and all(mask_text(t) == t for t in texts)
