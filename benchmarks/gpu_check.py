"""The GPU check (issue 12 item 6): three measurements in at most ~8 minutes, one JSON of figures on stdout.

1. ``tracer``: tracer overhead at the 7B shape (Qwen2.5-VL-7B widths, random weights, all 28 decoder layers,
   bf16), 1,024 visual (32 x 32 merged grid) + 512 response tokens: median seconds of the traced forward over
   the plain forward (``benchmarks/saliency_overhead.py``), with ``sdpa`` and, where ``flash_attn`` imports,
   ``flash_attention_2``. Target: ratio <= 1.05.
2. ``methods``: the saliency-methods table at the 3B shape (``benchmarks/saliency_methods.py --shape 3b``).
3. ``grpo``: GRPO steps with and without the saliency reward at the 3B widths with LoRA
   (``benchmarks/grpo_overhead.py --shape 3b``; fewer decoder layers so the run fits).

Each part runs in its own subprocess with a share of the time budget; a part that fails or runs out of time
is reported with its error and the rest still run. ``--dry-run``: the same three parts at tiny shapes on CPU
(a quick check that the script and its arguments work; its figures mean nothing).

    python benchmarks/gpu_check.py                 # on a CUDA machine (bash benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --dry-run       # CPU, tiny shapes, about a minute
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plans(dry_run: bool, attn: list[str], grpo_layers: int) -> dict[str, tuple[list[str], float]]:
    """``{part: (arguments of the benchmark script, share of the budget)}``.

    >>> sorted(plans(True, ["sdpa"], 2))
    ['grpo', 'methods', 'tracer_sdpa']
    """
    if dry_run:
        tracer = ["saliency_overhead.py", "--preset", "tiny", "--grid", "4", "4", "--response", "16",
                  "--repeats", "1", "--modes", "plain,tracer"]
        methods = ["saliency_methods.py", "--shape", "tiny", "--samples", "1", "--max-new-tokens", "8",
                   "--methods", "ours,attention", "--image-size", "56", "--no-memory"]
        grpo = ["grpo_overhead.py", "--steps", "1", "--warmup", "0", "--rounds", "1", "--completion-length", "8",
                "--width", "64"]
    else:
        tracer = ["saliency_overhead.py", "--preset", "7b", "--grid", "32", "32", "--response", "512",
                  "--repeats", "7", "--modes", "plain,tracer", "--device", "cuda", "--dtype", "bfloat16"]
        methods = ["saliency_methods.py", "--shape", "3b", "--layers", "36", "--vision-layers", "32",
                   "--device", "cuda", "--dtype", "bfloat16", "--image-size", "448", "--max-new-tokens", "128",
                   "--samples", "2", "--no-memory"]
        grpo = ["grpo_overhead.py", "--shape", "3b", "--layers", str(grpo_layers), "--steps", "2", "--warmup", "1",
                "--rounds", "1", "--completion-length", "128", "--threads", "4", "--dtype", "bfloat16",
                "--device", "cuda"]
    out = {f"tracer_{a}": (tracer + ["--attn", a], 0.2) for a in attn}
    out.update(methods=(methods, 0.3), grpo=(grpo, 0.5))
    return out


def run_part(args: list[str], timeout: float, workdir: Path) -> dict:
    """Run one benchmark script with ``--json``; its figures, or its error and the tail of its output."""
    out = workdir / f"{Path(args[0]).stem}_{abs(hash(tuple(args)))}.json"
    cmd = [sys.executable, str(HERE / args[0]), *args[1:], "--json", str(out)]
    if args[0] == "grpo_overhead.py":
        cmd += ["--workdir", str(workdir / "grpo")]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1), cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - t}
    res: dict = {"seconds": round(time.perf_counter() - t, 1)}
    if proc.returncode != 0 or not out.is_file():
        res.update(error=f"exit {proc.returncode}", tail=(proc.stdout + proc.stderr)[-1500:])
        return res
    res["figures"] = json.loads(out.read_text())
    return res


def summary(results: dict) -> dict:
    """The headline figures: tracer/plain time ratios, GRPO with/without ratio and the reward's share.

    >>> summary({"tracer_sdpa": {"figures": [{"tracer_time_ratio": 1.03}]}})
    {'tracer_time_ratio_sdpa': 1.03}
    """
    head = {}
    for part, res in results.items():
        figs = res.get("figures")
        if part.startswith("tracer_") and figs:
            head[f"tracer_time_ratio_{part[7:]}"] = figs[0]["tracer_time_ratio"]
        elif part == "grpo" and figs:
            head.update(grpo_step_ratio_wall=figs["ratio_wall"], grpo_reward_share_wall=figs["direct_overhead_wall"])
        elif part == "methods" and figs:
            rows = figs["rows"]
            head["methods_s_per_sample"] = {k: round(v["total_s"], 3) for k, v in rows.items()}
    return head


def environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "flash_attn": importlib.util.find_spec("flash_attn") is not None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: check the script, not the GPU")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all parts (default 470; dry run 300)")
    ap.add_argument("--grpo-layers", type=int, default=8, help="decoder layers of the 3B-wide GRPO model")
    ap.add_argument("--only", default=None, help="comma-separated parts to run (tracer_sdpa, methods, grpo, ...)")
    args = ap.parse_args(argv)
    env = environment()
    if not args.dry_run and env["gpu"] is None:
        print(json.dumps({"error": "no CUDA device visible; use --dry-run on CPU", **env}))
        return 2
    attn = ["sdpa"] + (["flash_attention_2"] if env["flash_attn"] and not args.dry_run else [])
    parts = plans(args.dry_run, attn, args.grpo_layers)
    if args.only:
        parts = {k: v for k, v in parts.items() if k in args.only.split(",")}
    budget = args.budget or (300.0 if args.dry_run else 470.0)
    start, results = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        shares_left = sum(share for _, share in parts.values())
        for name, (cmd, share) in parts.items():  # each part: its share of the time left (unused time flows on)
            left = budget - (time.perf_counter() - start)
            results[name] = run_part(cmd, left * share / shares_left, Path(tmp)) if left > 5 else \
                {"error": "no time left"}
            shares_left -= share
    report = {"dry_run": args.dry_run, **env, "seconds": round(time.perf_counter() - start, 1),
              "summary": summary(results), "parts": results}
    print(json.dumps(report, indent=1, default=str))
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
