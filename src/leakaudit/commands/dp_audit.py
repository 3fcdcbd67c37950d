"""``leakaudit dp-audit``: does a DP claim hold? Insert canaries, train, attack, bound ε from below.

The run budget is explicit: ``--mode one-run`` trains one model with ``--canaries`` m canaries
(each included with probability ½); ``--mode multi-run`` trains ``--models`` N models with one
canary and N without. The pipeline under audit is ``--train module:function`` (see
:mod:`leakaudit.audits.dp_audit` for the contract), or one of the lab's trainers
(``--lab-variant dp|no_noise|sample_rate|none`` with ``--epsilon``) on the lab's digits data.

``--world lm`` audits a causal-LM pipeline one-run with random-secret canary sentences: the hook
is ``train(texts, *, seed) -> (model, tokenizer[, info])`` on ``--data`` (a UTF-8 text file, one
document per line), or the lab's tiny GPT-2 DP-SGD trainer (``--lab-variant dp|no_noise|none``).
Trained models are kept in the run store (``OUT/.leakaudit/store/``) and reused when the same
command runs again, also after ``kill -9``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import (
    _command,
    _fail,
    _log,
    _quiet_libraries,
    no_options_before,
    out_console,
)


def _load_npz(path: Path):
    from leakaudit.api import load_npz

    return load_npz(path)


dp_app = typer.Typer(add_completion=False)


def register(app: typer.Typer) -> None:
    app.add_typer(dp_app, name="dp-audit")


if True:  # the default mode keeps its indentation from when it was the only one
    @dp_app.callback(invoke_without_command=True, subcommand_metavar="[white-box] [ARGS]...")
    def dp_audit(
        ctx: typer.Context,
        mode: Annotated[str, typer.Option("--mode", help="one-run (m canaries, 1 training) or multi-run (2·N trainings).")] = "one-run",
        world: Annotated[str, typer.Option("--world", help="classifier or lm (causal LM, one-run, secret canaries).")] = "classifier",
        train: Annotated[Optional[str], typer.Option("--train", help="Your training entry point, module:function. classifier: train(x, y, *, seed) -> model or (model, {'epsilon':…, 'delta':…}); lm: train(texts, *, seed) -> (model, tokenizer[, info]).")] = None,
        data: Annotated[Optional[Path], typer.Option("--data", help="Training data for --train. classifier: .npz with arrays x, y (and pool_x, pool_y for mislabelled canaries); lm: UTF-8 text, one document per line. Default: the lab's data.")] = None,
        lab_variant: Annotated[str, typer.Option("--lab-variant", help="Without --train: the lab trainer to audit: dp, no_noise (broken), sample_rate (broken), none.")] = "dp",
        epsilon: Annotated[float, typer.Option("--epsilon", min=0.0, help="Without --train: the lab trainer's target ε.")] = 1.0,
        canaries: Annotated[int, typer.Option("--canaries", min=2, help="One-run: number of canaries m.")] = 1000,
        models: Annotated[int, typer.Option("--models", min=2, help="Multi-run: models per side (2·N trained in all).")] = 32,
        select_fraction: Annotated[float, typer.Option("--select-fraction", help="Multi-run: share of the runs (per side) that choose the threshold; the rest certify. Smaller = more power when the separation is clear.")] = 0.5,
        confidence: Annotated[float, typer.Option("--confidence", help="Confidence of the lower bound (e.g. 0.95).")] = 0.95,
        delta: Annotated[Optional[float], typer.Option("--delta", help="δ of the bound (default: the pipeline's claimed δ).")] = None,
        canary_kind: Annotated[str, typer.Option("--canary-kind", help="crafted (random patterns, random labels), mislabelled (pool records, wrong labels) or clipbkd (the data's least-variance principal directions, ClipBKD of Jagielski et al. 2020).")] = "crafted",
        out: Annotated[Path, typer.Option("--out", help="Output folder: report.jsonl, and the trained models in its run store (reused on rerun).")] = Path("leakaudit-dp-audit"),
        seed: Annotated[int, typer.Option("--seed")] = 0,
    ) -> None:
        """Audit a DP training claim: a lower bound ε̂ next to the claimed ε and the maximum ε the
        audit could certify. ε̂ above the claim proves the implementation broken; below, nothing.
        Black-box: canaries in the training data, the final model attacked; `dp-audit white-box`
        inserts gradient canaries into the training steps instead."""
        if ctx.invoked_subcommand is not None:
            return no_options_before(ctx, "dp-audit")
        from leakaudit import api
        from leakaudit.errors import LeakauditError
        from leakaudit.metrics.dp_audit import NOT_A_PROOF

        try:
            _quiet_libraries()
            rep = api.dp_audit(mode=mode, world=world, train=train, data=data, lab_variant=lab_variant,
                               epsilon=epsilon, canaries=canaries, models=models,
                               select_fraction=select_fraction, confidence=confidence, delta=delta,
                               canary_kind=canary_kind, seed=seed, out=out, log=_log,
                               command=_command())
        except LeakauditError as e:
            _fail(e)
        res = rep.result
        out_console.print(res.bound_statement(), highlight=False)
        out_console.print(res.claim_statement(), highlight=False)
        out_console.print(res.verdict() if res.refuted or res.claimed_epsilon is None
                          or not res.comparable else NOT_A_PROOF,
                          highlight=False)
        out_console.print(f"cost: {res.models_trained} model(s) trained, {res.models_reused} reused, "
                          f"{res.wall_s:.1f} s wall; records: {out / 'report.jsonl'}", highlight=False)


@dp_app.command("white-box")
def white_box(
    train: Annotated[Optional[str], typer.Option("--train", help="Your DP-SGD entry point, module:function: train(x, y, *, seed, whitebox) -> (model, claim) or claim; it calls whitebox.start(n_params), adds whitebox.rows(ids) to the clipped per-example gradients of each batch and reports whitebox.observe(step, noisy_sum, sampled). The claim holds epsilon, delta, noise_multiplier, max_grad_norm, sample_rate, steps.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="With --train: .npz with arrays x, y.")] = None,
    clip: Annotated[Optional[float], typer.Option("--clip", min=0.0, help="With --train: the clipping bound C the pipeline uses (the canaries are built before training).")] = None,
    lab_variant: Annotated[str, typer.Option("--lab-variant", help="Without --train: the lab's DP-SGD pipeline on digits: dp (honest), or a broken one: sigma_div10, no_noise, no_clip, clip_after_noise, shuffle, noise_once_per_epoch.")] = "dp",
    epsilon: Annotated[float, typer.Option("--epsilon", min=0.0, help="Without --train: the lab pipeline's claimed ε.")] = 2.0,
    canaries: Annotated[int, typer.Option("--canaries", min=2, help="Gradient (Dirac) canaries m: more canaries, more power (m >= 1000).")] = 2000,
    confidence: Annotated[float, typer.Option("--confidence", help="Confidence of the one-run lower bound.")] = 0.95,
    out: Annotated[Path, typer.Option("--out", help="Output folder: report.jsonl.")] = Path("leakaudit-dp-audit"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """White-box DP audit of a DP-SGD pipeline that exposes its steps: gradient canaries inserted
    into the clipped per-example gradients of one training run, scored on the observed noisy
    updates (one-run, Steinke et al. 2023; per-step Gaussian-DP test after Nasr et al. 2023; a
    test of the claimed Poisson sampling). Catches noise smaller than claimed, skipped clipping,
    noise once per epoch and misreported sampling."""
    from leakaudit import api
    from leakaudit.errors import LeakauditError

    try:
        _quiet_libraries()
        rep = api.dp_audit_white_box(train=train, data=data, clip=clip, lab_variant=lab_variant,
                                     epsilon=epsilon, canaries=canaries, confidence=confidence,
                                     seed=seed, out=out, command=_command())
    except LeakauditError as e:
        _fail(e)
    for line in rep.result.summary_lines():
        out_console.print(line, highlight=False)
    out_console.print(f"records: {out / 'report.jsonl'}", highlight=False)
