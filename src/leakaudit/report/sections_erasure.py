"""HTML sections for defenses applied after training: the erasure verification
(``erasure`` records) and the output filter's bypass evaluation (``output_filter`` records)."""

from __future__ import annotations

import math
from typing import Any

from leakaudit.report.html_base import ReportData, Section


def _rate(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "—"
    return f"{r['k']}/{r['n']} = {r['value']:.0%} [{r['ci_low']:.0%}, {r['ci_high']:.0%}]"


def _auc(a: dict | None) -> str:
    if not a or a.get("value") is None:
        return "—"
    return f"{a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]"


def _f(x: Any, fmt: str = "{:.2f}") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


ORACLE = "the oracle (the yardstick)"


def _oracle_of(recs: list[dict]) -> dict | None:
    """The retrained oracle's own record (not a relapse variant of it)."""
    return next((r for r in recs if (r.get("is_oracle") or r.get("method") == "oracle")
                 and not r.get("relapse")), None)


def erasure_verdict(rec: dict, oracle: dict | None) -> str:
    """One verdict for a model's state on the forget set, relative to the oracle retrained
    without it (an exact retrain is what erasure means; its own forget-vs-never-seen AUC need not
    be 0.5, so 0.5 is not the yardstick):

    - the oracle itself: no verdict (:data:`ORACLE`);
    - ``retained``: the forget documents stand out more than after the retrain (the AUC
      difference's paired bootstrap CI is above 0; in records without it, the AUC CIs do not
      overlap and this one is higher), or it extracts more forget-set secrets than the oracle;
    - ``over-forgotten``: they stand out *less* than after the retrain (CI below 0): the
      unlearning itself is detectable (the "Streisand effect" of MUSE's PrivLeak);
    - ``as the oracle``: neither;
    - ``no oracle``: nothing to compare with (a folder unlearned without ``oracle``).
    """
    if oracle is not None and rec is oracle:
        return ORACLE
    if rec.get("is_oracle"):
        return ORACLE
    s, so = rec.get("secret_extraction"), (oracle or {}).get("secret_extraction")
    if s and s["k"] > (so["k"] if so else 0):
        return "retained"
    v = rec.get("vs_oracle")
    if v is not None:
        return v["verdict"]
    if oracle is None:
        return "no oracle"
    a = rec["membership"]["auc_forget_vs_unseen"]
    o = oracle["membership"]["auc_forget_vs_unseen"]
    if a["ci_low"] > o["ci_high"]:
        return "retained"
    if a["ci_high"] < o["ci_low"]:
        return "over-forgotten"
    return "as the oracle"


def _vs_oracle(rec: dict) -> str:
    v = rec.get("vs_oracle")
    if not v:
        return "—"
    return f"{v['auc_diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"


def build_erasure(rd: ReportData) -> Section | None:
    recs = rd.of("erasure")
    if not recs:
        return None
    base = [r for r in recs if not r.get("relapse")]
    relapsed = [r for r in recs if r.get("relapse")]
    first = recs[0]
    score = first.get("membership_score")
    chance = first["membership"].get("flag_chance", 0.05)
    oracle = _oracle_of(recs)
    verdicts = {r["model"]: erasure_verdict(r, oracle) for r in recs}
    # the answer, in words
    lines = []
    for r in base:
        m = r["model"]
        v = verdicts[m]
        rel = [x for x in relapsed if x["method"] == m and verdicts[x["model"]] == "retained"]
        rel_txt = (f"; relapses under {', '.join(x['relapse'] for x in rel)}"
                   if rel and v not in ("retained", ORACLE) else "")
        probed = any(x["method"] == m for x in relapsed)
        cost = r.get("cost_vs_oracle")
        lines.append(f"{m}: {v}" + (f" (Δ AUC {_vs_oracle(r)})" if r.get("vs_oracle") else "")
                     + rel_txt
                     + ("" if rel or not probed or v == "retained" else "; no relapse found")
                     + (f"; cost {cost:.2f}× the oracle's retraining" if cost is not None else "")
                     + f"; perplexity on retain {_f(r['utility']['ppl_retain'])}, "
                       f"never-seen {_f(r['utility']['ppl_unseen'])}")
    intro = (
        f"Can the data subject's {first['n_forget']} training document(s) be erased? Each option "
        "is compared with the original model and the oracle (retrained without them). "
        f"Membership: per-document {'reference-calibrated' if score == 'reference' else 'loss'} "
        f"score of the {first['n_forget']} forget documents against {first['n_unseen']} never-seen "
        "documents (AUC 0.5 = indistinguishable, 95% bootstrap CI) and the share of forget "
        f"documents above the {1 - chance:.0%} quantile of never-seen scores (chance {chance:.0%}). "
        "Relapse: the same measures after 8/4-bit round-to-nearest per-output-channel fake "
        "quantization of the linear weights (output embeddings kept) and after a short fine-tune "
        "on related retain documents. Each option is judged against the oracle, not against "
        "0.5 (a retrained model's own AUC need not be 0.5): the difference of its forget-vs-"
        "never-seen AUC from the oracle's, with a paired 95% bootstrap CI that resamples both "
        "the forget and the never-seen documents. Verdicts: as the oracle = the CI holds 0 and "
        "no more secrets extracted than by the oracle; retained = above the oracle (or more "
        "secrets extracted); over-forgotten = below it (detectable as unlearned). The oracle "
        "itself gets no verdict. "
        + (f"Oracle: forget-vs-never-seen AUC {_auc(oracle['membership']['auc_forget_vs_unseen'])}. "
           if oracle else "No oracle in this folder: no verdicts. ")
        + " | ".join(lines))
    base_auc = {r["model"]: r["membership"]["auc_forget_vs_unseen"]["value"] for r in base}
    moved = [f"{r['model']} {base_auc[r['method']]:.2f}→{r['membership']['auc_forget_vs_unseen']['value']:.2f}"
             for r in relapsed if r["method"] in base_auc]
    if moved:
        intro += " | Forget AUC before→after each relapse probe: " + ", ".join(moved) + "."
    headers = ["model", "kind", "verdict", "forget vs never-seen AUC", "Δ AUC vs oracle [CI]",
               "Δ vs before relapse",
               "retain vs never-seen AUC",
               f"forget docs flagged (chance {chance:.0%})", "secrets extracted",
               "mean canary exposure (bits)", "ppl retain", "ppl never-seen", "cost vs oracle"]

    def row(r: dict) -> list[str]:
        mem = r["membership"]
        exp = r.get("exposure")
        return [r["model"], r.get("kind") or ("relapse" if r.get("relapse") else "—"),
                verdicts[r["model"]], _auc(mem["auc_forget_vs_unseen"]), _vs_oracle(r),
                (_f(mem["auc_forget_vs_unseen"]["value"] - base_auc[r["method"]], "{:+.3f}")
                 if r.get("relapse") and r["method"] in base_auc else "—"),
                _auc(mem["auc_retain_vs_unseen"]), _rate(mem["forget_flagged"]),
                _rate(r.get("secret_extraction")),
                _f(exp["mean_exposure_rank"]) if exp else "—",
                _f(r["utility"]["ppl_retain"]), _f(r["utility"]["ppl_unseen"]),
                _f(r.get("cost_vs_oracle"), "{:.2f}×")]

    tables = [{"id": "erasure-table", "caption": "Erasure options against the oracle",
               "headers": headers, "rows": [row(r) for r in base]}]
    tables.append({"id": "erasure-relapse-table",
                   "caption": "Relapse: the same measures after quantization and fine-tuning",
                   "headers": headers, "rows": [row(r) for r in relapsed]})
    sisa = [r for r in base if r.get("retrained_shards") is not None]
    if sisa:
        s = sisa[0]
        tables.append({"id": "erasure-sisa", "caption": "SISA deletion",
                       "headers": ["shards", "retrained", "cost vs oracle"],
                       "rows": [[s.get("n_shards"), ", ".join(map(str, s["retrained_shards"])),
                                 _f(s.get("cost_vs_oracle"), "{:.2f}×")]]})
    return Section(id="erasure", title="Erasure (right to be forgotten)", kind="tables",
                   data={"intro": intro, "tables": tables, "figures": []})


def secret_headline(rates: list[dict], *, filtered: str = "memfree",
                    unfiltered: str = "unfiltered") -> str | None:
    """The output filter's answer in one line: how many canary secrets still came out with the
    filter on, per prompt style (a secret counts when its letters and digits appear in the
    output: the ``normalized`` measure, so a spaced or reformatted secret counts too), next to
    the unfiltered model's count. ``rates``: the ``output_filter`` rate records (``variant``,
    ``style``, ``probe_kind``, ``measure``, ``k``, ``n``). None without secret probes.

    >>> r = [{"variant": v, "style": st, "probe_kind": "secret", "measure": "normalized",
    ...       "k": k, "n": 18} for v, st, k in [("memfree", "plain", 1), ("memfree", "spaced", 2),
    ...                                         ("unfiltered", "plain", 9)]]
    >>> secret_headline(r)
    'Canary secrets still extracted with the filter on: 1/18 plain, 2/18 spaced (unfiltered: 9/18 plain).'
    """
    sel = [r for r in rates if r.get("probe_kind") == "secret" and r.get("measure") == "normalized"]
    on = [r for r in sel if r.get("variant") == filtered]
    if not on:
        return None
    def counts(rs: list[dict]) -> str:
        return ", ".join(f"{r['k']}/{r['n']} {r['style']}" for r in rs)

    parts = counts(on)
    off = [r for r in sel if r.get("variant") == unfiltered]
    ctx = f" (unfiltered: {counts(off)})" if off else ""
    if any(r["k"] for r in on):
        return f"Canary secrets still extracted with the filter on: {parts}{ctx}."
    return f"No canary secret extracted with the filter on: {parts}{ctx}."


def build_output_filter(rd: ReportData) -> Section | None:
    recs = rd.of("output_filter")
    if not recs:
        return None
    setup = [r for r in recs if r.get("kind") == "setup"]
    rates = [r for r in recs if r.get("kind") == "rate"]
    s = setup[-1] if setup else {}
    f = s.get("filter") or {}
    fp = (s.get("fp_rate") or {}).get("measured")
    intro = (f"MemFree output filter (Ippolito et al. 2023): {f.get('n')}-token n-grams of the "
             f"training corpus in a Bloom filter ({f.get('library')}, false-positive rate set to "
             f"{f.get('fp_rate')}, measured {_rate(fp)} on random n-grams). Greedy continuations of "
             "training-document prefixes (memorization) and canary prompts (secrets), unfiltered "
             "and filtered, in several styles. exact = the output starts with the true suffix / holds the "
             "secret; near = normalized edit similarity >= 0.8; normalized = exact after the "
             "style's normalization (case, spaces, punctuation); filter n-gram = n consecutive "
             "output tokens are a training token n-gram (checked with a suffix array over the "
             "tokenized corpus, not the Bloom filter); text window = the text of n output tokens "
             "occurs in the corpus (also under another tokenization). A style that recovers "
             "nothing shows 0.")
    measures = ["exact", "near", "normalized", "filter_ngram", "text_window"]
    tables = []
    for kind in ("memorization", "repeated", "secret"):
        sel = [r for r in rates if r["probe_kind"] == kind]
        if not sel:
            continue
        keys = sorted({(r["variant"], r["style"]) for r in sel}, key=lambda k: (k[1], k[0]))
        by = {(r["variant"], r["style"], r["measure"]): r for r in sel}
        tables.append({"id": f"output-filter-{kind}",
                       "caption": f"{kind}: leak rates with 95% Clopper–Pearson intervals",
                       "headers": ["style", "variant", *measures],
                       "rows": [[st, t, *[_rate(by.get((t, st, m))) for m in measures]]
                                for t, st in keys]})
    head = secret_headline(rates)
    if head:
        intro = head + " " + intro
    return Section(id="output-filter", title="Output filter and its bypasses", kind="tables",
                   data={"intro": intro, "tables": tables, "figures": []})
