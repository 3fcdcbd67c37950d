"""Deployment profiles: what is deployed, trained on what, how it is exposed, where.

A profile is a TOML or YAML file validated against ``leakaudit/schemas/profile.schema.json``
(JSON Schema 2020-12, shipped as package data). Unknown values are left out rather than guessed:
the risk model then uses a documented assumption and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError

ORIGINS = ("vendor_api", "open_weights", "own_training")
MODEL_KINDS = ("llm", "classifier")
DATA_KINDS = ("phi", "secrets", "pii", "proprietary_code", "proprietary", "public", "unknown")
OUTPUTS = ("logprobs", "embeddings", "scores", "text", "label_only")
AUDIENCES = ("public", "customers", "internal")
EXAMPLES_DIR = Path(__file__).parent / "examples"


def schema_path() -> Path:
    return Path(__file__).resolve().parents[1] / "schemas" / "profile.schema.json"


def profile_schema() -> dict[str, Any]:
    """The JSON Schema of a deployment profile."""
    num = {"type": "number", "exclusiveMinimum": 0}
    kinds = {"type": "array", "items": {"enum": list(DATA_KINDS)}, "uniqueItems": True}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://leakaudit.invalid/schemas/profile-1.schema.json",
        "title": "leakaudit deployment profile",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "model", "exposure"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "title": {"type": "string"},
            "source": {"type": "string"},
            "model": {"type": "object", "additionalProperties": False, "required": ["origin", "kind"],
                      "properties": {
                          "origin": {"enum": list(ORIGINS),
                                     "description": "vendor_api: used as-is through an API; "
                                                    "open_weights: a public model you fine-tune; "
                                                    "own_training: trained or fine-tuned by you"},
                          "kind": {"enum": list(MODEL_KINDS)},
                          "task": {"type": "string"},
                          "parameters": num,
                          "parameters_assumed": {"type": "boolean"}}},
            "training": {"type": "object", "additionalProperties": False, "required": ["kinds"],
                         "description": "The (fine-)tuning data the deployer put into the model; "
                                        "omit when the model is used as-is.",
                         "properties": {
                             "records": {"type": "integer", "minimum": 1},
                             "records_assumed": {"type": "boolean"},
                             "kinds": kinds,
                             "duplication": {"type": "number", "minimum": 0, "maximum": 1,
                                             "description": "fraction of records with (near-)duplicates"},
                             "description": {"type": "string"}}},
            "pretraining": {"type": "object", "additionalProperties": False, "required": ["kinds"],
                            "description": "What the model's own (vendor) training data holds, as far as known.",
                            "properties": {"kinds": kinds, "description": {"type": "string"}}},
            "dp": {"type": "object", "additionalProperties": False, "required": ["epsilon"],
                   "properties": {"epsilon": num, "delta": {"type": "number", "minimum": 0, "maximum": 1}}},
            "exposure": {"type": "object", "additionalProperties": False, "required": ["outputs", "audience"],
                         "properties": {
                             "outputs": {"enum": list(OUTPUTS)},
                             "audience": {"enum": list(AUDIENCES)},
                             "users": {"type": "integer", "minimum": 1},
                             "rate_limited": {"type": "boolean"}}},
            "compliance": {"type": "object", "additionalProperties": False, "properties": {
                "jurisdictions": {"type": "array", "items": {"type": "string"}},
                "data_subject_rights": {"type": "boolean"},
                "domain": {"type": "string"},
                "processes": kinds}},
        },
    }


@dataclass(frozen=True)
class Profile:
    """A validated deployment profile (the raw dict is kept in ``data``)."""

    name: str
    data: dict[str, Any] = field(repr=False)
    path: str | None = None

    @property
    def title(self) -> str:
        return self.data.get("title") or self.name

    def section(self, key: str) -> dict[str, Any]:
        return self.data.get(key) or {}


def _errors(data: Any) -> list[str]:
    import jsonschema

    v = jsonschema.Draft202012Validator(profile_schema())
    out = []
    for e in sorted(v.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        out.append(f"{where}: {e.message}")
    return out


def profile_from_dict(data: Any, *, path: str | None = None) -> Profile:
    errs = _errors(data)
    if errs:
        raise InputError(f"invalid deployment profile: {errs[0]}"
                         + (f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""), path=path)
    return Profile(str(data["name"]), data, path)


def load_profile(path: str | Path) -> Profile:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) profile; bad input → InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path=str(p))
    raw = p.read_bytes()
    suffix = p.suffix.lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=str(p)) from None
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"invalid TOML: {e}", path=str(p)) from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            raise InputError(f"invalid YAML: {str(e).splitlines()[0]}", path=str(p),
                             line=None if line is None else line + 1) from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", path=str(p), line=e.lineno) from None
    else:
        raise InputError("a profile must be .toml, .yaml/.yml or .json", path=str(p))
    return profile_from_dict(data, path=str(p))


def example_names() -> list[str]:
    return sorted(f.stem for f in EXAMPLES_DIR.glob("*.toml"))


def load_example(name: str) -> Profile:
    f = EXAMPLES_DIR / f"{name.upper()}.toml"
    if not f.is_file():
        raise InputError(f"no example profile {name!r}; examples: {', '.join(example_names())}")
    return load_profile(f)
