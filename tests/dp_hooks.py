"""Training entry points used by the DP-audit tests, as a user would write them for
``leakaudit dp-audit --train tests.dp_hooks:NAME``."""

import numpy as np


def train_knn(x, y, *, seed):
    """1-nearest-neighbour: memorizes every training record (no privacy at all). Claims ε = 1."""
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=1).fit(np.asarray(x).reshape(len(x), -1), y)
    return model, {"epsilon": 1.0, "delta": 1e-5}


def train_ignores_data(x, y, *, seed):
    """A model that never looks at its training data (perfectly private, ε = 0): a fixed linear
    map, whatever the data. Claims ε = 0.5."""
    import torch

    torch.manual_seed(1234)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(np.shape(x)[1:])), 10))
    return model.eval(), {"epsilon": 0.5, "delta": 1e-5}


def train_mlp(x, y, *, seed):
    """The lab's MLP (64-32-10, Adam), a few epochs on whatever it is given: the torch module."""
    from leakaudit.training.classifier import MLPSpec, TrainConfig, train_classifier

    x = np.asarray(x, np.float32).reshape(len(x), -1)
    spec = MLPSpec(input_dim=x.shape[1], n_classes=10, hidden=(32,))
    return train_classifier(x, y, spec, TrainConfig(epochs=30, seed=seed)), {"epsilon": 1.0, "delta": 1e-5}


def train_mlp_onnx(x, y, *, seed):
    """The same training as :func:`train_mlp`, the model exported to ONNX into
    $LEAKAUDIT_TEST_ONNX_DIR; returns its spec ``onnx:FILE`` (a classifier target by path)."""
    import os
    from pathlib import Path

    import torch

    module, info = train_mlp(x, y, seed=seed)
    path = Path(os.environ["LEAKAUDIT_TEST_ONNX_DIR"]) / f"mlp-seed{seed}.onnx"
    torch.onnx.export(module, (torch.zeros(1, module[1].in_features),), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      dynamo=False)
    return f"onnx:{path}", info


def train_mlp_label_only(x, y, *, seed):
    """The same MLP behind an API that answers the top-1 label only."""
    from leakaudit.targets.classifier import LabelOnlyOutputs, classifier_from

    module, info = train_mlp(x, y, seed=seed)
    return LabelOnlyOutputs(classifier_from(module, input_shape=np.shape(x)[1:])), info


def not_a_model(x, y, *, seed):
    return "a string"


def lm_ignores_data(texts, *, seed):
    """An LM pipeline that returns a fixed model whatever it is given (the tiny test GPT-2 whose
    folder is in $LEAKAUDIT_TEST_LM_DIR). Claims ε = 2."""
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = os.environ["LEAKAUDIT_TEST_LM_DIR"]
    return (AutoModelForCausalLM.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d),
            {"epsilon": 2.0, "delta": 1e-5, "n_texts": len(texts)})


def train_numpy_dpsgd(x, y, *, seed, whitebox=None, clip=True):
    """A DP-SGD logistic regression written outside leakaudit (numpy; its own Poisson sampling,
    per-example clipping and noise; its claim from Opacus' RDP accountant), serving a white-box
    audit through the hook protocol: ``whitebox.n_rows`` extra examples in its sampler, their
    gradients from ``whitebox.rows``, each step's noisy sum to ``whitebox.observe``. ``clip=False``
    is the broken version (clipping skipped; the same claim)."""
    import math

    from opacus.accountants import RDPAccountant

    rng = np.random.default_rng(seed)
    n, d = x.shape
    C, sigma, batch, epochs, lr = 1.0, 1.5, 50, 3, 0.5
    extra = whitebox.n_rows if whitebox is not None else 0
    rows = n + extra
    q, steps = batch / rows, epochs * math.ceil(rows / batch)
    if whitebox is not None:
        whitebox.start(d + 1)
    x1, w = np.c_[x, np.ones(n)], np.zeros(d + 1)
    for t in range(steps):
        idx = np.flatnonzero(rng.random(rows) < q)
        data, virtual = idx[idx < n], idx[idx >= n] - n
        p = 1 / (1 + np.exp(-x1[data] @ w))
        g = (p - y[data])[:, None] * x1[data]
        if len(virtual):
            g = np.vstack([g, whitebox.rows(virtual)])
        if clip:
            g = g * np.minimum(1.0, C / (np.linalg.norm(g, axis=1) + 1e-12))[:, None]
        noisy = g.sum(0) + rng.normal(0, sigma * C, d + 1)
        if whitebox is not None:
            mask = np.zeros(extra, dtype=bool)
            mask[virtual] = True
            whitebox.observe(t, noisy, mask)
        w = w - lr * noisy / batch
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    claim = {"epsilon": acc.get_epsilon(1e-5), "delta": 1e-5, "noise_multiplier": sigma, "max_grad_norm": C,
             "sample_rate": q, "steps": steps}
    return w, claim


def train_numpy_dpsgd_unclipped(x, y, *, seed, whitebox=None):
    return train_numpy_dpsgd(x, y, seed=seed, whitebox=whitebox, clip=False)


def lm_finetune_dp_tiny(texts, *, seed):
    """leakaudit's own DP fine-tuning entry point (:class:`leakaudit.lab.finetune.DPAuditFinetune`:
    LoRA, DP-SGD per document, ε = 8 at δ = 1e-5) on the tiny test GPT-2 whose folder is in
    $LEAKAUDIT_TEST_LM_DIR instead of SmolLM2."""
    import os

    from leakaudit.lab.finetune import DPAuditFinetune

    return DPAuditFinetune(base=os.environ["LEAKAUDIT_TEST_LM_DIR"], epochs=1.0, batch_size=4,
                           n_ctx=32)(texts, seed=seed)
