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
