"""What to audit first (with the leakaudit commands) and the regulatory flags of a profile."""

from __future__ import annotations

from leakaudit.triage.profile import Profile

PERSONAL = {"pii", "phi"}
#: EU AI Act: domains whose systems are high-risk (Art. 6: Annex I products such as medical
#: devices; Annex III areas).
HIGH_RISK_DOMAINS = {
    "healthcare": "AI used for medical decisions is high-risk when it is (part of) a medical device "
                  "(AI Act Art. 6(1), Annex I: MDR/IVDR)",
    "employment": "Annex III(4): recruitment, promotion, termination, task allocation",
    "credit": "Annex III(5)(b): creditworthiness and credit scoring of natural persons",
    "insurance": "Annex III(5)(c): risk assessment and pricing in life and health insurance",
    "education": "Annex III(3): admission, assessment, proctoring",
    "biometrics": "Annex III(1): remote biometric identification, categorisation, emotion recognition",
    "law_enforcement": "Annex III(6)",
    "migration": "Annex III(7)",
    "justice": "Annex III(8)",
    "critical_infrastructure": "Annex III(2)",
    "essential_services": "Annex III(5)(a): eligibility for public benefits and services",
}


def audits_first(profile: Profile) -> list[dict[str, str]]:
    """Audits in the order to run them: membership inference first (fast, and it almost always
    shows something — the seed's advice), then the attacks the model's kind and data call for."""
    model, tr = profile.section("model"), profile.section("training")
    kinds = set(tr.get("kinds") or [])
    fail_mia = "--fail-on 'membership.tpr@0.01 > 0.05'"
    if not tr:
        return [{"audit": "none on your data",
                 "why": "the model was not trained on your data (used as-is): membership inference "
                        "and extraction of your records do not apply; review the vendor's data "
                        "retention and whether your prompts are used for training",
                 "command": ""}]
    out = []
    if model["kind"] == "classifier":
        out.append({"audit": "membership inference",
                    "why": "first: fast, needs only scores, and a confirmed member is already a "
                           "disclosure (that the person is in the data set)",
                    "command": f"leakaudit membership classifier MODEL_DIR --data members_nonmembers.npz {fail_mia}"})
        out.append({"audit": "model inversion / attribute inference",
                    "why": "scores let an attacker reconstruct class representatives or a record's "
                           "sensitive attribute",
                    "command": "leakaudit invert MODEL_DIR --reference-data public.npz --format jsonl,html,sarif"})
        return out
    out.append({"audit": "membership inference",
                "why": "first: faster than extraction and almost always shows something; compare "
                       "against the model-free baseline and a reference (base) model",
                "command": "leakaudit membership llm --model MODEL_DIR --members train_sample.jsonl "
                           f"--nonmembers heldout.jsonl --reference BASE_MODEL {fail_mia}"})
    out.append({"audit": "training-data extraction",
                "why": "does the model recite training records verbatim? verified against the corpus",
                "command": "leakaudit extract --model MODEL_DIR --corpus train.jsonl --reference BASE_MODEL "
                           "--format jsonl,html,sarif --fail-on 'extraction.verified > 0'"})
    if kinds & {"secrets", "pii", "phi"}:
        out.append({"audit": "canary exposure",
                    "why": "secrets and identifiers: insert canaries of the same format, fine-tune, "
                           "and measure how exposed they are",
                    "command": "leakaudit canaries insert --corpus train.jsonl --template 'key = {secret}' "
                               "--space api_key --out canaried && (fine-tune on canaried/corpus.jsonl) && "
                               "leakaudit canaries exposure --model MODEL_DIR --manifest canaried/manifest.json "
                               "--fail-on 'exposure.max > 20'"})
    out.append({"audit": "memorization rate",
                "why": "how much of the corpus is memorized exactly, by duplicate count",
                "command": "leakaudit memorization --model MODEL_DIR --corpus train.jsonl"})
    return out


def regulatory_flags(profile: Profile) -> list[dict[str, str]]:
    comp, tr = profile.section("compliance"), profile.section("training")
    juris = {j.lower() for j in comp.get("jurisdictions") or []}
    known = bool(juris)
    trained = set(tr.get("kinds") or [])
    processed = set(comp.get("processes") or [])
    flags = []

    def applies(region: str) -> str | None:
        if not known:
            return f"applies if data subjects are in the {region.upper()} (no jurisdiction given)"
        return "applies" if region in juris or (region == "eu" and "eea" in juris) else None

    personal_trained = trained & PERSONAL
    if personal_trained or processed & PERSONAL:
        status = applies("eu")
        if status:
            if personal_trained:
                why = (f"the model was trained on personal data ({', '.join(sorted(personal_trained))}); "
                       "a model that can reveal a person's membership or record processes that data; "
                       "a confirmed membership is a disclosure even without the record")
            else:
                why = ("the deployment processes personal data (customer queries) through a third "
                       "party; not trained on it (processing and processor terms, not memorization)")
            flags.append({"regulation": "GDPR", "status": status, "why": why})
        if personal_trained and status:
            dp = profile.section("dp")
            flags.append({
                "regulation": "GDPR Art. 17 (erasure)", "status": status,
                "why": "a record cannot be deleted from trained weights: the options are retraining "
                       "without it (exact, costly), sharded retraining (SISA), or approximate "
                       "unlearning verified by membership inference before/after"
                       + (f"; DP at ε = {dp['epsilon']:g} bounds the record's influence but is not erasure"
                          if dp else "")})
    phi = (trained | processed) & {"phi"}
    if phi:
        status = applies("us")
        if status:
            flags.append({"regulation": "HIPAA", "status": status,
                          "why": "protected health information is "
                                 + ("in the training data" if "phi" in trained else "processed")
                                 + "; confirming that a named patient's record was used discloses PHI "
                                   "(that they were a patient)"})
    domain = (comp.get("domain") or "").lower()
    if domain in HIGH_RISK_DOMAINS:
        status = applies("eu")
        if status:
            flags.append({"regulation": "EU AI Act (high-risk)", "status": status,
                          "why": HIGH_RISK_DOMAINS[domain] + "; obligations include data governance "
                                 "(Art. 10), logging, human oversight and robustness/privacy testing"})
    return flags
