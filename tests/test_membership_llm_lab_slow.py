"""The LLM membership lab: the lab corpus's training split vs its held-out split (same generator).

Same-distribution non-members: the model-free baseline stays near chance, while documents holding
a canary repeated >= 16 times are detected far above chance at 1% FPR.
"""

import pytest

from leakaudit.attacks.membership.audit_llm import audit_llm_membership
from leakaudit.attacks.membership.evaluate import EvalConfig


@pytest.mark.slow
def test_llm_lab_membership_canaries_and_blind_baseline(tmp_path):
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.lab.run import LabConfig
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import train_causal_lm, train_tokenizer

    cfg = LabConfig.quick()
    corpus = generate_lab_corpus(LabCorpusConfig(n_docs=cfg.n_docs, n_heldout=cfg.n_heldout,
                                                 seed=cfg.seed, canary_repeats=cfg.canary_repeats,
                                                 boilerplate_repeats=cfg.boilerplate_repeats))
    train = [d["text"] for d in corpus.train]
    held = [d["text"] for d in corpus.heldout]
    tok = train_tokenizer(train, vocab_size=cfg.vocab_size)
    train_causal_lm(train, tok, cfg.target, seed=0, out_dir=tmp_path / "target")
    train_causal_lm(held, tok, cfg.reference, seed=1, out_dir=tmp_path / "reference")
    target = HFCausalLM.load(tmp_path / "target", name="target")
    reference = HFCausalLM.load(tmp_path / "reference", name="reference")
    ids = [d["id"] for d in corpus.train]
    heavy = {doc for c in corpus.manifest["canaries"] if c["repeats"] >= 16 for doc in c["doc_ids"]}
    group = [i for i, d in enumerate(ids) if d in heavy]
    assert len(group) >= 20
    a = audit_llm_membership(target, {"reference": reference}, train, held, k=0.2,
                             member_groups={"canaries x>=16": group}, member_ids=ids,
                             nonmember_ids=[d["id"] for d in corpus.heldout],
                             eval_config=EvalConfig(n_boot=300), log=print)
    for name, b in a.baseline.items():
        print(name, "blind", b.metrics.auc, b.metrics.auc_ci)
    for e in a.evaluations:
        print(e.subset, e.label, round(e.metrics.auc, 3), e.metrics.tpr(0.01).label())
    blind = a.baseline["all"].metrics
    assert blind.auc_ci[0] <= 0.5 + 0.05 and abs(blind.auc - 0.5) < 0.1
    best = max(a.evaluations, key=lambda e: (e.subset == "canaries x>=16") * e.metrics.tpr(0.01).tpr)
    assert best.subset == "canaries x>=16"
    assert best.metrics.tpr(0.01).resolvable and best.metrics.tpr(0.01).ci_low > 0.05
    # PII is masked in the exposed-record table: masking again changes nothing
    from leakaudit.corpus.pii import mask_text
    texts = [r["text"] for k, r in a.records() if k == "membership_record"]
    assert texts and all(mask_text(t) == t for t in texts)
