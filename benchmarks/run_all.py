"""Every benchmark of this folder at a small size, its ratios written to JSON, and a regression
check against a committed baseline.

    PYTHONPATH=src python benchmarks/run_all.py --small --out bench.json
    PYTHONPATH=src python benchmarks/run_all.py --small --out bench.json --compare benchmarks/baseline.json
    PYTHONPATH=src python benchmarks/run_all.py --compare benchmarks/baseline.json --from bench.json

Each benchmark runs as its own process with the sizes below (``--small``: each one a minute or
two of CPU or less). Its printed ratios are read from its output and written as **speed-ups,
higher = better**: a "leakaudit vs the reference pattern" ratio as printed, a cost ratio (DP-SGD
step time over the plain step, an output filter's overhead, Ray's overhead) as its inverse. The
benchmarks without a speed ratio (index build rates, the DP-audit and label-only accuracy tables)
are run as a check that they still work; their status is recorded, not compared.

``--compare BASELINE`` flags every ratio more than ``--tolerance`` (default 20%) below the
baseline's, and every ratio of the baseline that a run no longer prints (a broken benchmark),
and exits 1 when anything is flagged. Ratios compare like with like only on similar machines and
loads: the baseline records where it was measured.

The benchmarks run with ``OMP_NUM_THREADS=1`` unless it is set. ``--only NAME`` (repeatable) runs some benchmarks; ``--list`` prints them with their commands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Ratio:
    """A ratio read from a benchmark's output: ``pattern`` has a group ``v`` (the number) and
    optionally ``k`` (a label put into ``name`` as ``{k}``); ``kind`` is ``"speedup"`` (as
    printed), ``"cost"`` (printed as a cost multiple: 1/v) or ``"overhead"`` (printed as a
    percentage overhead: 1/(1 + v/100))."""

    name: str
    pattern: str
    kind: str = "speedup"

    def read(self, text: str) -> dict[str, float]:
        out = {}
        for m in re.finditer(self.pattern, text, flags=re.MULTILINE):
            v = float(m.group("v").replace(",", ""))
            if self.kind == "cost":
                v = 1.0 / v if v > 0 else float("inf")
            elif self.kind == "overhead":
                v = 1.0 / (1.0 + v / 100.0)
            key = self.name.format(k=m.groupdict().get("k") or "")
            out[key] = round(v, 4)
        return out


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    small: tuple[str, ...]
    ratios: tuple[Ratio, ...] = field(default_factory=tuple)
    needs_out: bool = False  #: the script takes ``--out DIR`` (a temporary folder here)

    def command(self, small: bool, out_dir: Path | None) -> list[str]:
        args = list(self.small) if small else []
        if self.needs_out:
            args += ["--out", str(out_dir)]
        return [sys.executable, str(HERE / self.script), *args]


NUM = r"(?P<v>[-+]?[\d,]*\.?\d+)"

BENCHES: tuple[Bench, ...] = (
    Bench("defenses", "bench_defenses.py",
          ("--docs", "2000", "--words", "100", "--mb", "1", "--steps", "5"),
          (Ratio("minhash_rensa_vs_datasketch_{k}", r"num_perm=\s*(?P<k>\d+)\s.*?ratio\s+" + NUM + r"x"),
           Ratio("dp_step_plain_vs_{k}", r"DP-SGD \((?P<k>\w+) clipping\)\s+[\d.]+ ms/step\s+" + NUM + "×",
                 kind="cost"))),
    Bench("dp_audit", "bench_dp_audit.py", ("--tiny",), needs_out=True),
    Bench("endpoint", "bench_endpoint.py",
          ("--shape", "tiny", "--docs", "10", "--samples", "8", "--new-tokens", "32"),
          (Ratio("endpoint_scoring_vs_engine_c{k}", r"^concurrency (?P<k>\d+): [\d.]+ docs/s = " + NUM + " x engine"),
           Ratio("endpoint_scoring_vs_raw_http_c{k}", r"^concurrency (?P<k>\d+): .*?, " + NUM + " x raw HTTP"),
           Ratio("endpoint_sampling_vs_engine", r"^extraction: sampling [\d.]+ samples/s = " + NUM + " x"))),
    Bench("finetune", "bench_finetune.py", ("--steps", "5", "--warmup", "2", "--rounds", "2"),
          (Ratio("finetune_lora_plain_vs_dp_{k}",
                 r"^LoRA DP-SGD \((?P<k>[\w-]+) clipping\) on SmolLM2: [\d.]+ ms/step\s+" + NUM + "×",
                 kind="cost"),)),
    Bench("index", "bench_index.py",
          ("--mb", "4", "--shard-mb", "1", "--lookups", "5000", "--repeats", "1", "--generations", "50")),
    Bench("label_only", "bench_label_only.py",
          ("--n", "30", "--art-max-iter", "2", "--art-max-eval", "100", "--art-init-eval", "10")),
    Bench("membership", "bench_membership.py", ("--docs", "40"),
          (Ratio("membership_shared_vs_per_attack", r"speed-up vs per-attack batched: " + NUM + "x wall"),
           Ratio("membership_shared_vs_reference", r"speed-up vs per-attack reference pattern: " + NUM + "x wall"))),
    Bench("memorization", "bench_memorization.py", ("--sequences", "64", "--repeats", "1"),
          (Ratio("memorization_teacher_forcing_vs_{k}", r"ratio teacher forcing / (?P<k>.+?): " + NUM + "x"),)),
    Bench("output_filter", "bench_output_filter.py", ("--size", "tiny"),
          (Ratio("output_filter_speed_vs_unfiltered_{k}", r"^\s*(?P<k>\S+): unfiltered .*overhead " + NUM + "%",
                 kind="overhead"),)),
    Bench("ray", "bench_ray.py", ("--texts", "64", "--samples", "8", "--workers", "1"),
          (Ratio("ray_1_worker_vs_in_process_{k}",
                 r"(?P<k>membership|extraction) " + NUM + r"%(?=[,\s])", kind="overhead"),)),
    Bench("sampling", "bench_sampling.py", ("--samples", "20", "--batch", "20", "--tokens", "64"),
          (Ratio("sampling_batched_vs_batch1", r"^ratio: " + NUM + "x"),)),
    Bench("threads", "bench_threads.py", ("--docs", "24", "--epochs", "5"),
          (Ratio("threads_default_vs_1_beside_busy_loop", r"^default vs 1 thread beside a busy loop: " + NUM + "x"),)),
    Bench("lanes", "bench_lanes.py", ("--size", "tiny"),
          (Ratio("lab_two_lanes_vs_one_process", r"^two lanes vs one process: " + NUM + "x"),)),
    Bench("scoring", "bench_scoring.py", ("--samples", "4", "--tokens", "128", "--rounds", "1"),
          (Ratio("scoring_batched_vs_reference", r"^ratio batched / reference: " + NUM + "x"),)),
)


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def read_ratios(bench: Bench, text: str) -> dict[str, float]:
    """The ratios a benchmark printed, under slugged names.

    >>> b = next(b for b in BENCHES if b.name == "ray")
    >>> read_ratios(b, "ray overhead, 1 worker vs in-process: membership +25.0%, extraction -20.0% (goal <= +15%)")
    {'ray_1_worker_vs_in_process_membership': 0.8, 'ray_1_worker_vs_in_process_extraction': 1.25}
    >>> b = next(b for b in BENCHES if b.name == "defenses")
    >>> read_ratios(b, "DP-SGD (ghost clipping)       25.0 ms/step    2.50×   goal ≤ 3×: met")
    {'dp_step_plain_vs_ghost': 0.4}
    >>> b = next(b for b in BENCHES if b.name == "finetune")
    >>> read_ratios(b, "LoRA DP-SGD (per-unit clipping) on SmolLM2: 1500.0 ms/step  1.25× (goal ≤ 2×: met)")
    {'finetune_lora_plain_vs_dp_per_unit': 0.8}
    """
    text = text.split("ray overhead", 1)[-1] if bench.name == "ray" else text
    out: dict[str, float] = {}
    for r in bench.ratios:
        out.update({_slug(k): v for k, v in r.read(text).items()})
    return out


def run_bench(bench: Bench, *, small: bool, timeout: float, log=print) -> dict:
    """Run one benchmark; its status, ratios, CPU seconds (user + system of the process tree)
    and wall seconds."""
    # one thread unless OMP_NUM_THREADS says otherwise: the ratios then compare across machines
    env = {"OMP_NUM_THREADS": "1", **os.environ, "TOKENIZERS_PARALLELISM": "false"}
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix=f"bench-{bench.name}-") as tmp:
        cmd = bench.command(small, Path(tmp) / "out")
        log(f"== {bench.name}: {' '.join(cmd[1:])}")
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp)
            status, text = ("ok" if p.returncode == 0 else f"exit {p.returncode}"), p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            status = f"timeout after {timeout:.0f} s"
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    ratios = read_ratios(bench, text) if status == "ok" else {}
    res = {"status": status, "ratios": ratios, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
           "command": " ".join(["python", f"benchmarks/{bench.script}", *cmd[2:]])}
    if status != "ok":
        res["tail"] = text.strip().splitlines()[-5:]
    elif bench.ratios and not ratios:
        res["status"] = "no ratios in the output"
        res["tail"] = text.strip().splitlines()[-5:]
    log(f"   {res['status']}, {res['cpu_s']} s CPU, {res['wall_s']} s wall: "
        + (", ".join(f"{k} {v:g}" for k, v in ratios.items()) or "(no ratios)"))
    return res


def compare(current: dict, baseline: dict, *, tolerance: float) -> list[str]:
    """The regressions of ``current`` against ``baseline`` (both ``run_all`` JSON): ratios more
    than ``tolerance`` below the baseline's, ratios (or benchmarks) that went missing, and
    benchmarks that fail now and ran in the baseline.

    >>> base = {"benchmarks": {"a": {"status": "ok", "ratios": {"x": 10.0, "y": 2.0}}}}
    >>> compare({"benchmarks": {"a": {"status": "ok", "ratios": {"x": 8.1, "y": 2.5}}}}, base, tolerance=0.2)
    []
    >>> compare({"benchmarks": {"a": {"status": "ok", "ratios": {"x": 7.9}}}}, base, tolerance=0.2)
    ['a: x fell 21% (10 -> 7.9)', 'a: y missing (baseline 2)']
    """
    flags = []
    for name, b in baseline.get("benchmarks", {}).items():
        c = current.get("benchmarks", {}).get(name)
        if c is None:
            continue  # not run this time (--only)
        if b.get("status") == "ok" and c.get("status") != "ok":
            flags.append(f"{name}: {c.get('status')} (ran in the baseline)")
            continue
        for key, old in b.get("ratios", {}).items():
            new = c.get("ratios", {}).get(key)
            if new is None:
                flags.append(f"{name}: {key} missing (baseline {old:g})")
            elif old > 0 and new < old * (1 - tolerance):
                flags.append(f"{name}: {key} fell {1 - new / old:.0%} ({old:g} -> {new:g})")
    return flags


def _machine() -> dict:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "loadavg_at_start": load, "python": sys.version.split()[0],
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="the small sizes (a minute or two each)")
    ap.add_argument("--out", type=Path, help="write the results (JSON) here")
    ap.add_argument("--compare", type=Path, help="a baseline JSON: flag ratios that fell")
    ap.add_argument("--from", dest="from_", type=Path, help="compare this results JSON instead of running")
    ap.add_argument("--tolerance", type=float, default=0.2, help="allowed fall of a ratio (default 0.2)")
    ap.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    ap.add_argument("--note", default="", help="a note stored in the results (where it was measured)")
    ap.add_argument("--list", action="store_true", help="print the benchmarks and their commands")
    a = ap.parse_args(argv)
    names = {b.name for b in BENCHES}
    unknown = sorted(set(a.only) - names)
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}",
              file=sys.stderr)
        return 2
    if a.list:
        for b in BENCHES:
            print(f"{b.name:14s} python benchmarks/{b.script} {' '.join(b.small)}")
        return 0
    if a.from_ is not None:
        current = json.loads(a.from_.read_text())
    else:
        if a.out is None and a.compare is None:
            print("error: give --out FILE, --compare BASELINE, or both", file=sys.stderr)
            return 2
        chosen = [b for b in BENCHES if not a.only or b.name in a.only]
        current = {"small": a.small, "note": a.note, "machine": _machine(),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "benchmarks": {}}
        for b in chosen:
            current["benchmarks"][b.name] = run_bench(b, small=a.small, timeout=a.timeout)
            if a.out is not None:  # written after each benchmark: a long run keeps what finished
                a.out.write_text(json.dumps(current, indent=1) + "\n")
    if a.compare is None:
        return 0
    baseline = json.loads(a.compare.read_text())
    flags = compare(current, baseline, tolerance=a.tolerance)
    for f in flags:
        print(f"REGRESSION {f}")
    if not flags:
        print(f"no ratio fell more than {a.tolerance:.0%} below {a.compare}")
    return 1 if flags else 0


if __name__ == "__main__":
    sys.exit(main())
