"""The triage risk model: a transparent function of a deployment's factors.

Every risk score is a product of factors in [0, 1] (duplication may exceed 1), each printed
with its value and where it came from (the profile, an assumption, or a measurement):

    risk = sensitivity × leakage × output × audience

    leakage (assumed) = memorization pressure × duplication × DP factor
    memorization pressure M = 1 / (1 + sqrt(rpp / 1e-3)),   rpp = training records / parameters
    duplication           D = 1 + fraction of duplicated records      (unknown: 0.1 assumed)
    DP factor             f = ε / (ε + 10)                            (no DP: 1)

- **Sensitivity** of the most sensitive data kind in training: PHI and secrets 1.0, PII 0.8,
  proprietary code 0.6, proprietary 0.5, unknown 0.3, public 0.1.
- **Memorization pressure** grows as records per parameter fall: few records for many weights
  are memorized (Carlini et al. 2022: memorization grows with model size; Tirumala et al. 2022).
  rpp = 1e-3 gives M = 0.5. Unknown sizes: 0.5 assumed; a vendor model used as-is: 0.3 assumed
  (web-scale diverse crawl; Carlini et al. 2021 still extracted hundreds of training sequences).
- **Duplication** raises memorization (Kandpal et al. 2022; Carlini et al. 2022).
- **DP factor**: f(ε) = ε/(ε+10), i.e. half the memorization-driven risk remains at ε = 10;
  loosely calibrated on empirical audits, where attacks on DP-SGD models at ε ≤ 8 are far weaker
  than on undefended ones (Nasr et al. 2021; Carlini et al. 2022). The *worst-case* guarantee
  (TPR ≤ e^ε·FPR + δ) is printed next to it: at ε = 5 and FPR = 1% it is 100%, i.e. vacuous.
  Duplicated records weaken it (group privacy: k copies give kε).
- **Output** factor, per risk: extraction needs generated text (text, log-probs 1.0, embeddings
  0.3, scores or labels 0); membership inference works on log-probs/scores (1.0), embeddings (0.9),
  text or labels only (0.8; label-only attacks nearly match score-based ones, Choquette-Choo et
  al. 2021); inversion on scores/log-probs (1.0), embeddings (0.8), text/labels (0.3).
- **Audience**: public 1.0, customers 0.9, internal 0.6; × 0.85 when rate-limited.
- **Inversion** reconstructs class averages or attributes rather than records: × 0.6.

Measured results (``--results DIR``) replace the assumed *leakage* of a risk:
membership: (TPR@1%FPR − 1%) / 9% clipped to [0, 1] (TPR ≥ 10% at 1% FPR counts as full
leakage), or 2·(AUC − 0.5) when TPR@1% is not resolvable; extraction: 1 if a verified leak or an
extracted canary, else max(10 × exact-memorization rate, exposure / 20 bits) clipped;
inversion: (top-1 − chance) / (1 − chance).

A profile's score is its highest risk. The control recommended is the candidate control that
lowers that score most (each control's effect is one factor change, listed in ``CONTROLS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from leakaudit.triage.profile import Profile

SENSITIVITY = {"phi": 1.0, "secrets": 1.0, "pii": 0.8, "proprietary_code": 0.6,
               "proprietary": 0.5, "unknown": 0.3, "public": 0.1}
OUTPUT = {
    "extraction": {"logprobs": 1.0, "text": 1.0, "embeddings": 0.3, "scores": 0.0, "label_only": 0.0},
    "membership": {"logprobs": 1.0, "scores": 1.0, "embeddings": 0.9, "text": 0.8, "label_only": 0.8},
    "inversion": {"logprobs": 1.0, "scores": 1.0, "embeddings": 0.8, "text": 0.3, "label_only": 0.3},
}
AUDIENCE = {"public": 1.0, "customers": 0.9, "internal": 0.6}
RATE_LIMIT = 0.85
INVERSION_WEIGHT = 0.6
RPP_HALF = 1e-3
EPS_HALF = 10.0
DUP_ASSUMED = 0.1
M_UNKNOWN, M_VENDOR = 0.5, 0.3
RISK_TITLES = {"membership": "Membership inference (was this person's record in training?)",
               "extraction": "Verbatim extraction of training data (records, secrets)",
               "inversion": "Model inversion / attribute inference (class averages, sensitive attributes)"}
LOW_RISK = 0.05


def memorization_pressure(records: float, params: float) -> float:
    """M = 1 / (1 + sqrt(rpp / 1e-3)).

    >>> round(memorization_pressure(50_000, 110_000_000), 3)
    0.597
    >>> memorization_pressure(1_000, 1_000_000)
    0.5
    """
    return 1.0 / (1.0 + math.sqrt((records / params) / RPP_HALF))


def dp_factor(epsilon: float | None) -> float:
    """f(ε) = ε / (ε + 10); 1 without DP.

    >>> dp_factor(5.0), dp_factor(10.0), dp_factor(None)
    (0.3333333333333333, 0.5, 1.0)
    """
    return 1.0 if epsilon is None else epsilon / (epsilon + EPS_HALF)


def dp_worst_case_tpr(epsilon: float, delta: float = 0.0, fpr: float = 0.01) -> float:
    """The (ε, δ)-DP bound on any membership attack's TPR at a given FPR: min(1, e^ε·FPR + δ).

    >>> round(dp_worst_case_tpr(1.0, 1e-5), 4)
    0.0272
    >>> dp_worst_case_tpr(5.0, 1e-5)
    1.0
    """
    return min(1.0, math.exp(epsilon) * fpr + delta)


@dataclass(frozen=True)
class Factor:
    name: str
    value: float
    source: str  #: "profile", "assumed", "measured", "derived"
    why: str

    def text(self) -> str:
        return f"{self.name} {self.value:.3g} ({self.source}: {self.why})"


@dataclass
class Risk:
    key: str
    score: float
    factors: list[Factor]
    measured: bool = False

    @property
    def title(self) -> str:
        return RISK_TITLES[self.key]

    def reasons(self) -> list[str]:
        return [f.text() for f in self.factors]


@dataclass
class Inputs:
    """The factor values a profile gives (or the model assumes). Controls change one of them."""

    sensitivity: Factor
    pressure: Factor
    duplication: Factor
    dp: Factor
    outputs: str
    audience: Factor
    kind: str
    has_training: bool
    output_filter: bool = False
    measured: dict[str, tuple[float, str]] = field(default_factory=dict)  # risk -> (leakage, why)


def _kinds(profile: Profile) -> list[str]:
    tr = profile.section("training") or profile.section("pretraining")
    return list(tr.get("kinds") or ["unknown"])


def inputs_of(profile: Profile) -> Inputs:
    model, tr, exp = profile.section("model"), profile.section("training"), profile.section("exposure")
    kinds = _kinds(profile)
    top = max(kinds, key=lambda k: SENSITIVITY[k])
    sens = Factor("sensitivity", SENSITIVITY[top], "profile",
                  f"most sensitive data in training: {top}" + ("" if tr else " (the vendor's training data)"))
    if tr and tr.get("records") and model.get("parameters"):
        rpp = tr["records"] / model["parameters"]
        assumed = [w for w, k in (("records", "records_assumed"), ("parameters", "parameters_assumed"))
                   if tr.get(k) or model.get(k)]
        pressure = Factor("memorization pressure", memorization_pressure(tr["records"], model["parameters"]),
                          "assumed" if assumed else "profile",
                          f"{tr['records']:,} records / {model['parameters']:,} parameters = {rpp:.2g} per parameter"
                          + (f"; {' and '.join(assumed)} assumed" if assumed else ""))
    elif not tr and model.get("origin") == "vendor_api":
        pressure = Factor("memorization pressure", M_VENDOR, "assumed",
                          "no fine-tuning: only the vendor's web-scale training data is in the model")
    else:
        pressure = Factor("memorization pressure", M_UNKNOWN, "assumed", "records or parameters unknown")
    if tr.get("duplication") is not None:
        dup = Factor("duplication", 1 + tr["duplication"], "profile",
                     f"{tr['duplication']:.0%} of records duplicated")
    else:
        dup = Factor("duplication", 1 + DUP_ASSUMED, "assumed", f"unknown; {DUP_ASSUMED:.0%} duplicated assumed")
    dp = profile.section("dp")
    if dp:
        eps, delta = dp["epsilon"], dp.get("delta", 0.0)
        dpf = Factor("DP factor", dp_factor(eps), "profile",
                     f"DP-SGD at ε = {eps:g}: ε/(ε+10); worst-case bound TPR@1%FPR ≤ "
                     f"{dp_worst_case_tpr(eps, delta):.0%}")
    else:
        dpf = Factor("DP factor", 1.0, "profile", "no differential privacy")
    aud = AUDIENCE[exp["audience"]] * (RATE_LIMIT if exp.get("rate_limited") else 1.0)
    audf = Factor("audience", aud, "profile", f"{exp['audience']}"
                  + (", rate-limited" if exp.get("rate_limited") else "")
                  + (f", {exp['users']:,} users" if exp.get("users") else ""))
    return Inputs(sens, pressure, dup, dpf, exp["outputs"], audf, model["kind"], bool(tr))


def _risks(inp: Inputs) -> list[Risk]:
    keys = ["membership"] + (["extraction"] if inp.kind == "llm" else ["inversion"])
    out = []
    for key in keys:
        outf = Factor(f"output ({key})", OUTPUT[key][inp.outputs], "profile", f"outputs: {inp.outputs}")
        if key in inp.measured:
            val, why = inp.measured[key]
            leak = [Factor("leakage", val, "measured", why + "; replaces the assumed "
                           f"memorization pressure × duplication × DP = "
                           f"{inp.pressure.value * inp.duplication.value * inp.dp.value:.3g}")]
        else:
            leak = [inp.pressure, inp.duplication, inp.dp]
        factors = [inp.sensitivity, *leak, outf, inp.audience]
        if key == "extraction" and inp.output_filter:
            factors.append(Factor("output filter", 0.7, "control", "responses filtered for PII/secrets"))
        if key == "inversion":
            factors.append(Factor("inversion weight", INVERSION_WEIGHT, "model",
                                  "reconstructs class averages or attributes, not records"))
        score = math.prod(f.value for f in factors)
        out.append(Risk(key, score, factors, measured=key in inp.measured))
    return sorted(out, key=lambda r: -r.score)


# ------------------------------------------------------------------ controls

@dataclass(frozen=True)
class Control:
    key: str
    title: str
    effect: str


CONTROLS = (
    Control("dp_sgd", "Train / fine-tune with DP-SGD at ε = 8 (Opacus; δ = 1/records)",
            "DP factor → 8·k/(8·k+10), k = copies of a duplicated record (group privacy)"),
    Control("scrub", "Remove secrets and direct identifiers from the training data before training "
                     "(secret scanning, PII scrubbing; rotate any exposed key)",
            "sensitivity: secrets → 0.1, PII → 0.3 (PHI and proprietary content stay: the task needs them)"),
    Control("dedup", "Deduplicate the training data", "duplication → 1"),
    Control("labels_only", "Return labels / text only: no scores, log-probs or embeddings",
            "outputs → label_only (classifiers) or text (LLMs)"),
    Control("output_filter", "Filter responses for PII and secrets before they leave the service",
            "extraction × 0.7 (verbatim filters are evadable: Ippolito et al. 2023)"),
)


def _apply(inp: Inputs, control: str, profile: Profile) -> Inputs | None:
    tr = profile.section("training")
    trains = profile.section("model").get("origin") in ("own_training", "open_weights") and tr
    if control == "dp_sgd" and trains and (not profile.section("dp") or profile.section("dp")["epsilon"] > 8):
        k = 1 + 10 * (inp.duplication.value - 1)
        f = dp_factor(8 * k)
        return replace(inp, dp=Factor("DP factor", f, "control", f"DP-SGD at ε = 8, k = {k:.2g}"))
    if control == "scrub" and trains and {"secrets", "pii"} & set(tr.get("kinds") or []):
        after = {**SENSITIVITY, "secrets": 0.1, "pii": 0.3}
        s = max(after[k] for k in tr["kinds"])
        if s < inp.sensitivity.value:
            return replace(inp, sensitivity=Factor("sensitivity", s, "control", "after scrubbing"))
    if control == "dedup" and trains and inp.duplication.value > 1:
        return replace(inp, duplication=Factor("duplication", 1.0, "control", "deduplicated"))
    if control == "labels_only":
        target = "label_only" if inp.kind == "classifier" else "text"
        if inp.outputs != target and inp.outputs != "label_only":
            return replace(inp, outputs=target)
    if control == "output_filter" and inp.kind == "llm" and not inp.output_filter:
        return replace(inp, output_filter=True)
    return None


@dataclass
class Assessment:
    profile: Profile
    risks: list[Risk]
    audits: list[dict[str, str]]
    control: dict[str, Any] | None
    flags: list[dict[str, str]]
    measured_from: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return self.risks[0].score if self.risks else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "title": self.profile.title, "score": self.score,
                "risks": [{"risk": r.key, "title": r.title, "score": r.score, "measured": r.measured,
                           "factors": [f.__dict__ for f in r.factors]} for r in self.risks],
                "audits_first": self.audits, "control": self.control, "regulatory": self.flags,
                "measured_from": self.measured_from, "notes": self.notes}


def assess(profile: Profile, results: list[dict[str, Any]] | None = None) -> Assessment:
    """Risks, first audits, the most impactful control and regulatory flags of one profile.
    ``results``: measured reports (``{"dir", "records"}``) of this deployment's model."""
    from leakaudit.triage.advice import audits_first, regulatory_flags
    from leakaudit.triage.measured import measured_leakage

    inp = inputs_of(profile)
    measured_from: list[str] = []
    if results:
        inp.measured, measured_from = measured_leakage(results)
    risks = _risks(inp)
    best = None
    base = risks[0].score
    for c in CONTROLS:
        changed = _apply(inp, c.key, profile)
        if changed is None:
            continue
        after = _risks(changed)[0].score
        if after < base - 1e-12 and (best is None or after < best[1]):
            best = (c, after)
    control = None
    if best is not None:
        c, after = best
        control = {"control": c.key, "title": c.title, "effect": c.effect, "score_before": base,
                   "score_after": after,
                   "why": f"lowers the top risk ({risks[0].key}) from {base:.3f} to {after:.3f}, "
                          "more than any other applicable control"}
    notes = []
    if base < LOW_RISK:
        notes.append(f"overall risk is low (< {LOW_RISK}); no control is urgent")
    if any(f.source == "assumed" for r in risks for f in r.factors):
        notes.append("some factors are assumptions (marked 'assumed'); measured results "
                     "(--results DIR) replace the leakage assumptions")
    return Assessment(profile, risks, audits_first(profile), control, regulatory_flags(profile),
                      measured_from, notes)


def compare(assessments: list[Assessment]) -> list[Assessment]:
    """Profiles ranked by their top risk, highest first."""
    return sorted(assessments, key=lambda a: -a.score)
