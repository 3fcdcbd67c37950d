"""Label-only membership inference: leakaudit's attacks against IBM ART's LabelOnlyDecisionBoundary.

The target is the digits lab's (``lab/membership.py``): the 1,797 digits split into a pool and a
population (15%, never trained on), an MLP (256 hidden units, 150 epochs, Adam 1e-3, batch 64,
no weight decay) trained on a seeded random half of the pool. Members are its training records,
non-members the other half of the pool (``--n`` of each, seeded; default all).

Both sides see the same label-only view of the same model and the same records:

- **ART** (``adversarial-robustness-toolbox``, only here, never a leakaudit dependency): what
  ``LabelOnlyDecisionBoundary.infer`` computes before thresholding, i.e. the L2 distance from
  ``HopSkipJump(targeted=False, max_iter, max_eval, init_eval).generate(x, y)`` to ``x``, 0 for a
  misclassified record (plus ``infer``'s own prediction of ``x``). Defaults are ART's (50, 10000,
  100). Every row ART's estimator predicts is counted.
- **leakaudit**: ``label_gap`` (1 query), ``label_augment`` and ``boundary_distance`` at each
  ``--budgets`` (queries per record, a hard cap), with LOSS (which needs probabilities) and the
  model-free baseline beside them.

Every attack's scores go through the same evaluation (AUC with a bootstrap CI, TPR at 1% and
0.1% FPR with Clopper–Pearson CIs); queries are totals over all records.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_label_only.py            # full size
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_label_only.py --n 30 \\
        --art-max-iter 2 --art-max-eval 100 --art-init-eval 10                       # a smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def build_target(seed: int):
    """The digits lab's target, members and non-members (see the module docstring)."""
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.training.classifier import MLPSpec, TrainConfig, train_classifier

    data = load_digits_data()
    pool = split_digits(data, {"pool": 0.85, "population": 0.15}, seed=seed)["pool"]
    rng = np.random.default_rng(seed)
    member = np.zeros(len(pool), bool)
    member[rng.permutation(len(pool))[: len(pool) // 2]] = True
    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(256,))
    module = train_classifier(pool.x[member], pool.y[member], spec,
                              TrainConfig(epochs=150, lr=1e-3, batch_size=64, weight_decay=0.0, seed=seed))
    return module, pool, member


def art_distances(module, x, y, *, max_iter: int, max_eval: int, init_eval: int, seed: int):
    """ART's boundary distances (LabelOnlyDecisionBoundary.infer before its threshold) and the
    rows its estimator was asked to predict."""
    import torch
    from art.attacks.evasion.hop_skip_jump import HopSkipJump
    from art.estimators.classification import PyTorchClassifier

    class Counting(PyTorchClassifier):
        rows = 0

        def predict(self, x, batch_size=128, **kw):
            Counting.rows += len(x)
            return super().predict(np.asarray(x, dtype=np.float32), batch_size=batch_size, **kw)

    # ART sees only the argmax of what it predicts: a label-only view of the same model
    est = Counting(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10,
                   clip_values=(0.0, 1.0))
    np.random.seed(seed)
    y1h = np.eye(10)[y]
    hsj = HopSkipJump(classifier=est, targeted=False, max_iter=max_iter, max_eval=max_eval,
                      init_eval=init_eval, verbose=False)
    x_adv = hsj.generate(x=x, y=y1h)
    dist = np.linalg.norm((x_adv - x).reshape(len(x), -1), ord=2, axis=1)
    dist[est.predict(x).argmax(1) != y] = 0  # as infer() does
    return dist, Counting.rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=0, help="members and non-members each (0: all)")
    ap.add_argument("--budgets", default="10,30,100", help="leakaudit queries per record")
    ap.add_argument("--art-max-iter", type=int, default=50)
    ap.add_argument("--art-max-eval", type=int, default=10000)
    ap.add_argument("--art-init-eval", type=int, default=100)
    ap.add_argument("--no-art", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from leakaudit.attacks.membership.audit_clf import LabelOnlySettings
    from leakaudit.attacks.membership.blind import BlindBaselineConfig, blind_baseline_features
    from leakaudit.attacks.membership.evaluate import EvalConfig, evaluate_scores
    from leakaudit.attacks.membership.label_only import LabelQueries
    from leakaudit.targets.classifier import LabelOnlyOutputs, TorchClassifier

    t0 = time.perf_counter()
    module, pool, member = build_target(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    mi, ni = np.flatnonzero(member), np.flatnonzero(~member)
    if args.n:
        mi, ni = rng.choice(mi, args.n, replace=False), rng.choice(ni, args.n, replace=False)
    idx = np.r_[mi, ni]
    x, y = pool.x[idx], pool.y[idx]
    labels = np.r_[np.ones(len(mi), int), np.zeros(len(ni), int)]
    full = TorchClassifier(module, n_classes=10, input_shape=(64,))
    acc = [(full.predict(pool.x[s]) == pool.y[s]).mean() for s in (member, ~member)]
    print(f"target: {member.sum()} members, train acc {acc[0]:.3f}, held-out acc {acc[1]:.3f} "
          f"({time.perf_counter() - t0:.1f}s); audited {len(mi)} members + {len(ni)} non-members")
    cfg = EvalConfig(fprs=(0.01, 0.001), n_boot=500, seed=args.seed)
    rows = []

    def add(name, scores, queries, seconds, max_per_record=None):
        ev = evaluate_scores(scores, labels, world="classifier", method=name, label=name, params={},
                             threat_model="", doc_uri="", subset="bench", config=cfg)
        rows.append((name, ev.metrics, queries, max_per_record, seconds))

    t = time.perf_counter()
    p = full.predict_proba(x)
    add("loss (probabilities)", np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None)), len(y),
        time.perf_counter() - t, 1)
    t = time.perf_counter()
    add("model-free baseline", blind_baseline_features(x, y, labels, n_classes=10,
                                                       config=BlindBaselineConfig()), 0,
        time.perf_counter() - t, 0)
    for budget in (int(b) for b in args.budgets.split(",")):
        for atk in LabelOnlySettings(budget=budget, image_shape=(8, 8), seed=args.seed).attacks(True):
            if atk.name == "label_gap" and budget != int(args.budgets.split(",")[0]):
                continue
            target = LabelOnlyOutputs(TorchClassifier(module, n_classes=10, input_shape=(64,)))
            t = time.perf_counter()
            s = atk.score(LabelQueries(target, x, y, clip=(0.0, 1.0), image_shape=(8, 8)))
            assert target.queries == atk.queries_.sum()
            add(f"leakaudit {atk.name} (budget {budget})", s, int(target.queries),
                time.perf_counter() - t, int(atk.queries_.max()))
    if not args.no_art:
        t = time.perf_counter()
        d, n_q = art_distances(module, x, y, max_iter=args.art_max_iter, max_eval=args.art_max_eval,
                               init_eval=args.art_init_eval, seed=args.seed)
        add(f"ART LabelOnlyDecisionBoundary (HSJ {args.art_max_iter}/{args.art_max_eval}/"
            f"{args.art_init_eval})", d, int(n_q), time.perf_counter() - t)
    print(f"\n{'method':<58} {'AUC [95% CI]':<22} {'TPR@1%FPR [CI]':<24} {'TPR@0.1%FPR':<12} "
          f"{'queries':>10} {'max/rec':>8} {'s':>7}")
    for name, m, q, mx, sec in rows:
        t1, t01 = m.tpr(0.01), m.tpr(0.001)
        tpr1 = (f"{t1.tpr:.3f} [{t1.ci_low:.3f}, {t1.ci_high:.3f}]" if t1.resolvable
                else "not resolvable")
        tpr01 = f"{t01.tpr:.3f}" if t01.resolvable else "n/r"
        print(f"{name:<58} {m.auc:.3f} [{m.auc_ci[0]:.3f}, {m.auc_ci[1]:.3f}]   {tpr1:<24} {tpr01:<12} "
              f"{q:>10,} {'' if mx is None else mx:>8} {sec:>7.1f}")


if __name__ == "__main__":
    main()
