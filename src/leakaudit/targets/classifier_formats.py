"""Classifier targets from the files and folders people keep them in: one loader, by spec prefix.

=================  ==========================================================================
spec               target
=================  ==========================================================================
``hf:DIR``         a transformers image- or sequence-classification folder (safetensors; local
                   only, offline): white-box for images (logits, input gradients), text in and
                   probabilities out for sequence classification; an ``input_shape`` with fewer
                   dimensions than the model's pixels (``64`` for ``1x8x8``) takes flat inputs
``onnx:FILE``      an ONNX model run by onnxruntime (CPU): black-box; logits or probabilities
                   (``#output=logits|probabilities``; default: an output named ``*prob*`` is
                   probabilities, else the first float output is logits)
``skops:FILE``     a scikit-learn model persisted with skops; loaded without pickle, after a
                   check that every type in the file is trusted (skops' defaults, scikit-learn's
                   types, plus those named in ``#trust=a.B,c.D``)
``leakaudit:DIR``  a folder written by ``leakaudit.training.classifier.save_classifier``
                   (``classifier.json`` + ``model.safetensors``)
``http://…``       an HTTP endpoint (:mod:`leakaudit.targets.http_classifier`); needs
                   ``n_classes`` and ``input_shape``; ``answers="labels"`` for a label-only one
=================  ==========================================================================

Without a prefix the kind is read from the path: a folder with ``classifier.json`` is leakaudit's,
with ``config.json`` Hugging Face's; ``.onnx`` and ``.skops`` files by extension. A pickle or
joblib file is refused with how to re-save it (skops); nothing here unpickles.

:func:`loaders` is the dispatch table, read from the registry (prefix → ``"module:function"``,
imported on first use), so each format's dependencies (onnxruntime, skops, transformers) load
only when it is chosen.
"""

from __future__ import annotations

import importlib
import math
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from leakaudit.errors import InputError, LeakauditError
from leakaudit.targets.classifier import (Classifier, ClassifierCapabilities, SklearnClassifier,
                                          TorchClassifier)


@dataclass(frozen=True)
class ClassifierOptions:
    """What a loader may need beyond the path. ``n_classes`` / ``input_shape``: for an endpoint
    (and formats that do not record them); ``batch_size``: inputs per call; ``timeout_s``: an
    endpoint's; ``answers``: ``"probabilities"`` or ``"labels"`` (an endpoint's output);
    ``output``: which ONNX output and what it holds; ``trust``: extra skops types to trust."""

    n_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    batch_size: int = 256
    timeout_s: float = 30.0
    device: str = "cpu"
    answers: str = "probabilities"
    output: str | None = None
    trust: tuple[str, ...] = field(default_factory=tuple)
    max_length: int = 512


def loaders() -> dict[str, str]:
    """prefix → ``"module:function(rest, options) -> Classifier"``, read from the registry's
    classifier backends (their ``classifier_schemes``), so a plugin's classifier format is a
    registry entry like the builtin ones."""
    from leakaudit import registry

    return {scheme: e.target for e in registry.entries("backends", world="classifier")
            for scheme in e.meta.get("classifier_schemes", ())}

#: the pip extra and the module each prefix needs beyond the base install
_NEEDS = {"onnx": ("onnxruntime", "classifiers"), "skops": ("skops", "classifiers")}

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".pck")
TORCH_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt")


def split_classifier_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """``(prefix, rest)`` of a classifier spec (see the module docstring)."""
    s = str(spec).strip()
    head, sep, rest = s.partition(":")
    if sep and head.lower() in ("http", "https"):
        return head.lower(), s
    if sep and head.lower() in loaders() and not os.path.exists(s):
        return head.lower(), rest
    path = Path(os.path.expanduser(s.partition("#")[0]))
    refuse_pickle(path)
    if path.is_dir():
        if (path / "classifier.json").is_file():
            return "leakaudit", s
        if (path / "config.json").is_file():
            return "hf", s
        raise InputError("not a classifier folder (no classifier.json or config.json)", path=s)
    if path.suffix.lower() in (".onnx", ".skops"):
        return path.suffix.lower()[1:], s
    if not path.exists():
        raise InputError("no such file or folder", path=s)
    raise InputError(f"cannot tell what kind of classifier this is; prefix it with one of "
                     f"{', '.join(k + ':' for k in loaders() if k != 'https')}", path=s)


def load_classifier_target(spec, *, options: ClassifierOptions = ClassifierOptions()) -> Classifier:
    """The classifier a spec names (a string or path; a Python object goes through
    :func:`leakaudit.targets.classifier.classifier_from`). ``target.source`` is the spec."""
    prefix, rest = split_classifier_spec(spec)
    mod_name, extra = _NEEDS.get(prefix, (None, None))
    if mod_name and importlib.util.find_spec(mod_name) is None:
        raise LeakauditError(f"the {prefix}: format needs the {mod_name!r} package, which is not "
                             f"installed: pip install 'leakaudit[{extra}]'")
    rest, opts = _fragment(rest, options)
    module, _, fn = loaders()[prefix].partition(":")
    target = getattr(importlib.import_module(module), fn)(rest, opts)
    target.source = str(spec)
    return target


def _fragment(rest: str, options: ClassifierOptions) -> tuple[str, ClassifierOptions]:
    """Options written after ``#`` in a file spec: ``output=…``, ``trust=a.B,c.D``."""
    if rest.startswith(("http://", "https://")) or "#" not in rest:
        return rest, options
    rest, _, frag = rest.partition("#")
    for part in filter(None, frag.split("&")):
        key, _, value = part.partition("=")
        if key == "output":
            options = replace(options, output=value)
        elif key == "trust":
            options = replace(options, trust=options.trust + tuple(v for v in value.split(",") if v))
        else:
            raise InputError(f"unknown option {key!r} after '#' (known: output, trust)", path=rest)
    return rest, options


def refuse_pickle(path: Path) -> None:
    """A one-line refusal, with how to re-save, for a pickle/joblib/torch-pickle file."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES or (path.is_file() and _starts_like_pickle(path)):
        raise InputError("a pickle/joblib file: leakaudit never unpickles (it can run arbitrary "
                         "code); re-save the model with skops (import skops.io as sio; "
                         "sio.dump(model, 'model.skops')) and pass skops:model.skops",
                         path=str(path))
    if suffix in TORCH_PICKLE_SUFFIXES:
        raise InputError("a pickled PyTorch checkpoint: leakaudit never unpickles; export the model "
                         "to ONNX (torch.onnx.export) and pass onnx:FILE, or pass the module to "
                         "leakaudit.targets.classifier.classifier_from in Python", path=str(path))


def _starts_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # pickle protocol 2..5


# -- skops ------------------------------------------------------------------------------------

#: modules whose types a skops file may hold without being named in ``trust``
TRUSTED_MODULE_PREFIXES = ("sklearn.",)


def load_skops_classifier(rest: str, options: ClassifierOptions) -> Classifier:
    """A scikit-learn estimator persisted with skops: every type in the file must be trusted
    (scikit-learn's own, or named in ``options.trust``) before anything is built."""
    import skops.io as sio

    path = Path(os.path.expanduser(rest))
    refuse_pickle(path)
    if not path.is_file():
        raise InputError("no such file", path=rest)
    if not zipfile.is_zipfile(path):
        raise InputError("not a skops file (skops files are zip archives written by skops.io.dump)",
                         path=rest)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # skops raises several kinds on a malformed archive
        raise InputError(f"not a readable skops file: {e}", path=rest) from None
    refused = sorted(t for t in untrusted
                     if not t.startswith(TRUSTED_MODULE_PREFIXES) and t not in options.trust)
    if refused:
        raise InputError(f"the file holds types leakaudit does not trust: {', '.join(refused)}; if "
                         f"you trust them, add #trust={','.join(refused)} to the spec", path=rest)
    estimator = sio.load(path, trusted=list(untrusted))
    return SklearnClassifier(estimator, input_shape=options.input_shape,
                             batch_size=options.batch_size)


# -- onnx -------------------------------------------------------------------------------------

class ONNXClassifier(Classifier):
    """An ONNX model run by onnxruntime on the CPU (black-box: no input gradients).

    ``output``: ``"logits"`` (softmax applied here, in float64) or ``"probabilities"``."""

    capabilities = ClassifierCapabilities(probabilities=True, logits=True, gradients=False)

    def __init__(self, path: str | Path, *, options: ClassifierOptions):
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"onnxruntime cannot load this model: {msg}", path=str(path)) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        fixed = [d if isinstance(d, int) else None for d in inp.shape]
        shape = options.input_shape or (tuple(fixed[1:]) if None not in fixed[1:] else None)
        if shape is None:
            raise InputError(f"the model's input {inp.name!r} has shape {inp.shape}; give input_shape",
                             path=str(path))
        self.output_name, self.output = self._pick_output(options.output)
        self.batch_size = fixed[0] if isinstance(fixed[0], int) else options.batch_size
        width = options.n_classes or self._raw(np.zeros((1, *shape), np.float32)).shape[1]
        super().__init__(n_classes=width, input_shape=shape)
        self.capabilities = replace(type(self).capabilities, logits=self.output == "logits",
                                    batch_size=self.batch_size)

    def _pick_output(self, wanted: str | None) -> tuple[str, str]:
        outs = [o for o in self.session.get_outputs() if o.type in ("tensor(float)", "tensor(double)")]
        if not outs:
            raise InputError("the model has no float tensor output (class scores); a scikit-learn "
                             "model converted with skl2onnx needs options={'zipmap': False}",
                             path=str(self.path))
        if wanted not in (None, "logits", "probabilities"):
            raise InputError(f"output must be logits or probabilities, got {wanted!r}", path=str(self.path))
        probs = [o for o in outs if "prob" in o.name.lower()]
        if wanted == "probabilities" or (wanted is None and probs):
            return (probs or outs)[0].name, "probabilities"
        return outs[0].name, "logits"

    def _raw(self, x: np.ndarray) -> np.ndarray:
        out = [self.session.run([self.output_name], {self.input_name: x[i:i + self.batch_size]})[0]
               for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float64)

    def logits(self, x) -> np.ndarray:
        self.capabilities.require("logits", who="logits()")
        x = self._check(x)
        self.queries += len(x)
        return self._raw(x)

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        raw = self._raw(x)
        return softmax(raw, axis=1) if self.output == "logits" else raw

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(f"onnx:{self.output_name}:{super().fingerprint()}".encode())
        h.update(self.path.read_bytes())
        return h.hexdigest()


def load_onnx_classifier(rest: str, options: ClassifierOptions) -> Classifier:
    path = Path(os.path.expanduser(rest))
    if not path.is_file():
        raise InputError("no such file", path=rest)
    return ONNXClassifier(path, options=options)


# -- Hugging Face -----------------------------------------------------------------------------

class HFTextClassifier(Classifier):
    """A transformers sequence-classification model with its tokenizer: inputs are texts, the
    answer the softmax of its logits (float64). Inputs cannot be perturbed: no gradients, and
    attacks that perturb inputs are skipped."""

    capabilities = ClassifierCapabilities(probabilities=True, logits=True, gradients=False,
                                          float_inputs=False)

    def __init__(self, model, tokenizer, *, batch_size: int, max_length: int, device: str = "cpu"):
        super().__init__(n_classes=model.config.num_labels, input_shape=())
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        # without a padding token every text goes alone (padding would change the answer)
        self.batch_size = int(batch_size) if tokenizer.pad_token is not None else 1
        self.max_length = int(max_length)
        self.capabilities = replace(type(self).capabilities, batch_size=self.batch_size)

    def _check(self, x) -> list[str]:
        texts = [x] if isinstance(x, str) else list(x)
        bad = [type(t).__name__ for t in texts if not isinstance(t, (str, np.str_))]
        if bad:
            raise InputError(f"a text classifier takes texts; got {bad[0]}")
        return [str(t) for t in texts]

    def _logits(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                out.append(self.model(**enc).logits.double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_classes))

    def logits(self, x) -> np.ndarray:
        texts = self._check(x)
        self.queries += len(texts)
        return self._logits(texts)

    def _predict_proba(self, x) -> np.ndarray:
        from scipy.special import softmax

        return softmax(self._logits(x), axis=1)

    def fingerprint(self) -> str:
        import hashlib

        from leakaudit.targets.classifier import hash_state

        h = hashlib.sha256(f"hf-text:{self.n_classes}".encode())
        hash_state(self.model, h)
        h.update(repr(sorted(self.tokenizer.get_vocab().items())).encode())
        return h.hexdigest()


def load_hf_classifier(rest: str, options: ClassifierOptions) -> Classifier:
    """An image- or sequence-classification folder (local, safetensors; never downloaded)."""
    from leakaudit.targets.checks import check_hf_model_dir

    path = Path(os.path.expanduser(rest))
    if not path.is_dir():
        raise InputError("no such folder (hf: classifiers are loaded from local folders only)",
                         path=rest)
    check_hf_model_dir(path)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    kind = _hf_kind(config, path)
    if getattr(config, "problem_type", None) == "multi_label_classification":
        raise InputError("a multi-label model (independent sigmoids per class): leakaudit's "
                         "classifier attacks need one softmax over the classes", path=rest)
    if kind == "text":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True,
                                                                   dtype="float32")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return HFTextClassifier(model, tok, batch_size=options.batch_size,
                                max_length=options.max_length, device=options.device)
    from transformers import AutoModelForImageClassification

    from leakaudit.targets.classifier import _LogitsOf

    model = AutoModelForImageClassification.from_pretrained(path, local_files_only=True,
                                                            dtype="float32")
    pixels = _hf_image_shape(config, path, required=options.input_shape is None)
    shape = tuple(options.input_shape or pixels)
    reshape = None
    if pixels is not None and len(shape) < len(pixels):  # flattened inputs, e.g. 64 for 1x8x8
        if math.prod(shape) != math.prod(pixels):
            raise InputError(f"input_shape {'x'.join(map(str, shape))} has {math.prod(shape)} values; "
                             f"the model takes pixel values of shape {'x'.join(map(str, pixels))} "
                             f"({math.prod(pixels)} values)", path=rest)
        reshape = pixels
    return TorchClassifier(_LogitsOf.wrap(model, reshape), n_classes=config.num_labels,
                           input_shape=shape, batch_size=options.batch_size, device=options.device)


def _hf_kind(config, path: Path) -> str:
    arch = " ".join(getattr(config, "architectures", None) or [])
    if "ForSequenceClassification" in arch:
        return "text"
    if "ForImageClassification" in arch:
        return "image"
    raise InputError(f"not an image- or sequence-classification model (architectures: "
                     f"{arch or 'none recorded'})", path=str(path))


def _hf_image_shape(config, path: Path, *, required: bool = True) -> tuple[int, ...] | None:
    """``(channels, height, width)`` of the pixel values the model takes: from the config's
    ``image_size``, else the preprocessor's ``crop_size``/``size`` (not recorded: an error when
    ``required``, else None)."""
    channels = int(getattr(config, "num_channels", 3))
    size = getattr(config, "image_size", None)
    if size is None and (path / "preprocessor_config.json").is_file():
        from leakaudit.errors import read_json_object

        pre = read_json_object(path / "preprocessor_config.json")
        size = pre.get("crop_size") or pre.get("size")
    if isinstance(size, dict):
        size = (size.get("height"), size.get("width")) if "height" in size else size.get("shortest_edge")
    if isinstance(size, int):
        size = (size, size)
    if not size or None in tuple(size):
        if not required:
            return None
        raise InputError("the image size is not recorded (config image_size or preprocessor size); "
                         "give input_shape", path=str(path))
    return (channels, int(size[0]), int(size[1]))


# -- HTTP -------------------------------------------------------------------------------------

def load_http_classifier(rest: str, options: ClassifierOptions) -> Classifier:
    from leakaudit.targets.http_classifier import HTTPClassifier

    if options.n_classes is None or options.input_shape is None:
        raise InputError("an HTTP classifier needs n_classes and input_shape", path=rest)
    return HTTPClassifier(rest, n_classes=options.n_classes, input_shape=options.input_shape,
                          batch_size=options.batch_size, timeout_s=options.timeout_s,
                          answers=options.answers)
