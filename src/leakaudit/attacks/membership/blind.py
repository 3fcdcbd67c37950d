"""The model-free ("blind") baseline that every LLM membership result is reported next to.

A bag-of-n-grams logistic regression that never looks at the model: it is trained to tell the
member texts from the non-member texts, cross-validated, and its out-of-fold scores are
evaluated like any attack. If it does as well as an attack, the member and non-member sets differ
in distribution and the attack's "success" may measure that shift, not memorization
(Das, Zhang & Tramèr 2024, arXiv 2406.16201; Duan et al. 2024, arXiv 2402.07841).
:func:`blind_baseline_features` is the same test for classifier records (features and class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DOC_URI = "https://arxiv.org/abs/2406.16201"


@dataclass(frozen=True)
class BlindBaselineConfig:
    """Word n-grams ``ngram_range`` (counts, sublinear tf-idf), L2 logistic regression with inverse
    regularization ``C``, ``n_splits``-fold stratified cross-validation shuffled with ``seed``."""

    ngram_range: tuple[int, int] = (1, 2)
    C: float = 1.0
    n_splits: int = 5
    seed: int = 0


def blind_baseline_scores(texts: Sequence[str], labels, *, config: BlindBaselineConfig,
                          groups: Sequence[str] | None = None) -> np.ndarray:
    """Out-of-fold P(member | text) from a bag-of-n-grams classifier (higher = member).

    Every text is scored by a model fitted on the other folds only, so the scores are honest
    estimates of what a model-free attacker learns from the two sets. ``groups`` (one label per
    text) keeps related texts in one fold (``StratifiedGroupKFold``), e.g. a canary and the
    same-template sentences it is compared with.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = list(texts)

    def fit_predict(tr, te, y):
        clf = make_pipeline(
            TfidfVectorizer(ngram_range=config.ngram_range, sublinear_tf=True, lowercase=True),
            LogisticRegression(C=config.C, max_iter=2000))
        clf.fit([texts[i] for i in tr], y[tr])
        return clf.predict_proba([texts[i] for i in te])[:, 1]

    return _out_of_fold(fit_predict, len(texts), labels, config=config, groups=groups)


def blind_baseline_features(x, y, labels, *, n_classes: int,
                            config: BlindBaselineConfig) -> np.ndarray:
    """The classifier audit's model-free baseline: out-of-fold P(member) from a standardized
    L2 logistic regression (inverse regularization ``config.C``) on each record's own features
    (``x`` flattened) and one-hot class ``y`` — the records alone, never the model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    feats = np.hstack([x, np.eye(n_classes)[np.asarray(y, dtype=np.int64)]])

    def fit_predict(tr, te, lab):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=config.C, max_iter=2000))
        clf.fit(feats[tr], lab[tr])
        return clf.predict_proba(feats[te])[:, 1]

    return _out_of_fold(fit_predict, len(feats), labels, config=config, groups=None)


def _out_of_fold(fit_predict, n: int, labels, *, config: BlindBaselineConfig,
                 groups: Sequence[str] | None) -> np.ndarray:
    """Every record scored by ``fit_predict(train_idx, test_idx, labels)`` fitted on the other
    folds only (stratified, or stratified-grouped by ``groups``, shuffled with ``config.seed``),
    with one BLAS thread so that the scores do not depend on the thread count."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels, dtype=np.int64)
    if n != len(y):
        raise ValueError(f"{n} texts but {len(y)} labels")
    n_min = int(min(y.sum(), len(y) - y.sum()))
    if n_min < 2:
        raise ValueError("the blind baseline needs at least 2 members and 2 non-members")
    splits = min(config.n_splits, n_min)
    out = np.empty(len(y))
    if groups is not None:
        if len(groups) != len(y):
            raise ValueError(f"{len(groups)} groups but {len(y)} texts")
        splits = min(splits, len(set(groups)))
        folds = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=config.seed).split(
            np.zeros(len(y)), y, groups=list(groups))
    else:
        folds = StratifiedKFold(n_splits=splits, shuffle=True, random_state=config.seed).split(
            np.zeros(len(y)), y)
    # BLAS (the solver's dot products) single-threaded: a multi-threaded reduction sums in an
    # order that depends on the thread count, and the scores (and a threshold read off them)
    # then differ in their last digits between machines
    with threadpool_limits(limits=1):
        for tr, te in folds:
            out[te] = fit_predict(tr, te, y)
    return out
