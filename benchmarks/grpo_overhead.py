"""GRPO step time with and without the saliency reward, on the tiny model, in one run.

    .venv/bin/python benchmarks/grpo_overhead.py [--steps 8] [--warmup 2] [--rounds 2] [--json out.json]

Two configurations that differ only in the saliency reward: ``with`` = format + accuracy + saliency
(the full Saliency-R1 reward), ``without`` = format + accuracy (Vision-R1: the saliency reward is not
computed at all). Same data, seeds, LoRA, batch (8 completions of one prompt per step), completion
budget and rollouts: :class:`~saliency_r1.training.grpo_rollouts.FormatForcingRollout` samples every
completion from the policy with TRL's generation config (``min_new_tokens`` = the budget, so every
completion has the same length in both configurations and the work differs only by the reward) and
then gives ALL of them the ``<think>…</think>answer`` format, so every completion is traced: the worst
case for the overhead (a real policy with broken formats is traced less). The runs alternate ``with``/``without`` for
``--rounds`` rounds so that machine load hits both alike; the first ``--warmup`` steps of each run are
excluded; per configuration the median step time over all measured steps is reported.

Times are taken both as wall seconds and as CPU seconds of this process (all threads; with the
default single torch thread this is robust to other load on a shared machine, where wall times are
not). Two figures: the ratio of median step times (end to end), and the direct share: the mean time
spent inside the saliency reward (prompt rebuild, traced forward, scoring) divided by the median step
time without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall and CPU (this process, all threads) seconds of each optimizer step."""

        def __init__(self):
            self.wall: list[float] = []
            self.cpu: list[float] = []
            self._t = (0.0, 0.0)

        def on_step_begin(self, args, state, control, **kw):
            self._t = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kw):
            self.wall.append(time.perf_counter() - self._t[0])
            self.cpu.append(time.process_time() - self._t[1])

    return StepTimer()


def _config(work: Path, tiny: Path, with_saliency: bool, args):
    from saliency_r1.config_io import packaged_config
    from saliency_r1.training.grpo_config import load_run_config

    name = "with" if with_saliency else "without"
    return load_run_config(
        packaged_config("variants/zero.yaml"), output_dir=str(work / name), resume=False,
        max_steps=args.warmup + args.steps,
        **{"model.path": str(tiny), "rewards.saliency": 1.0 if with_saliency else 0.0,
           "grpo.num_generations": 8, "grpo.per_device_train_batch_size": 8,
           "grpo.max_completion_length": args.completion_length, "grpo.logging_steps": 1,
           "grpo.save_steps": 10_000, "grpo.seed": 0, "data.n": 64, "data.seed": 0, "model.dtype": args.dtype,
           # every completion exactly max_completion_length tokens in both configurations: same work
           "grpo.extra": {"generation_kwargs": {"min_new_tokens": args.completion_length}}})


def _timed(reward, cpu: list, wall: list):
    """The reward wrapped to record its own CPU and wall seconds per call (name kept for TRL's logs)."""

    def call(*a, **k):
        t = (time.perf_counter(), time.process_time())
        out = reward(*a, **k)
        wall.append(time.perf_counter() - t[0])
        cpu.append(time.process_time() - t[1])
        return out

    call.__name__ = reward.__name__
    return call


def _run(work: Path, tiny: Path, with_saliency: bool, args) -> dict:
    """One training run: per measured step, wall and CPU seconds of the step and of the saliency reward."""
    import torch

    from saliency_r1.training.grpo import build_trainer
    from saliency_r1.training.grpo_rollouts import FormatForcingRollout

    torch.manual_seed(0)
    timer = _timer()
    trainer = build_trainer(_config(work, tiny, with_saliency, args), callbacks=[timer],
                            rollout_func=FormatForcingRollout(1.0, seed=0))
    sal_cpu: list[float] = []
    sal_wall: list[float] = []
    trainer.reward_funcs = [_timed(f, sal_cpu, sal_wall) if getattr(f, "__name__", "") == "saliency" else f
                            for f in trainer.reward_funcs]
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h][args.warmup:]
    w = args.warmup
    return {"step_wall": timer.wall[w:], "step_cpu": timer.cpu[w:], "reward_wall": sal_wall[w:],
            "reward_cpu": sal_cpu[w:],
            "alignment": [h["saliency/alignment"] for h in logs if "saliency/alignment" in h],
            "format_rate": [h["rewards/format/mean"] for h in logs],
            "completion_length": [h["completions/mean_length"] for h in logs]}


def floor(tiny: Path, length: int, reps: int = 4, device: str = "cpu", dtype: str = "float32") -> dict:
    """CPU seconds, on one batch of 8 completions of ``length`` tokens (one prompt, one image), of a plain
    no-grad forward over prompt + completions, of the traced forward alone, and of the whole reward."""
    import torch

    from saliency_r1.attribution.maps import holistic_maps
    from saliency_r1.data import ShapesWorldConfig, generate
    from saliency_r1.models.loading import load_hf
    from saliency_r1.models.spec import get_spec
    from saliency_r1.rewards import SaliencyReward
    from saliency_r1.attribution.batch import build_batch
    from saliency_r1.rewards._batch import encode_once
    from saliency_r1.grammar import end_ids, find_spans

    model, proc = load_hf(tiny, device=device, dtype=dtype)
    tok, s = proc.tokenizer, generate(ShapesWorldConfig(), 1, seed=0)[0]
    g = torch.Generator().manual_seed(0)
    m = 2 * length // 3
    body = lambda n: torch.randint(20, 600, (n,), generator=g).tolist()  # noqa: E731
    ids = [[tok.convert_tokens_to_ids("<think>"), *body(m - 2), tok.convert_tokens_to_ids("</think>"),
            *body(length - m - 1), tok.eos_token_id] for _ in range(8)]
    prompt = [{"role": "user", "content": [{"type": "image", "image": s["image"]},
                                           {"type": "text", "text": s["question"]}]}]
    reward = SaliencyReward("full", model=model, processor=proc, batch_size=8)
    call = lambda: reward([prompt] * 8, [tok.decode(i, skip_special_tokens=True) for i in ids], ids,  # noqa: E731
                          boxes=[s["boxes"]] * 8)
    p = reward._prompt_inputs(prompt, [s["image"]], {})
    spans = [find_spans(tok, i, end_ids(model, tok)) for i in ids]
    spec = get_spec(model)
    batch = build_batch([p] * 8, ids, spans, tok.pad_token_id, int(spec.get(model, spec.merge_size_attr)),
                        image_embeds=encode_once(model, [p] * 8, device)).to(device)
    inputs, starts, abs_spans = batch.inputs, batch.starts, batch.spans
    out = {}
    with torch.no_grad():
        for name, fn in (("plain_forward", lambda: model(**inputs, use_cache=False, logits_to_keep=1)),
                         ("traced_forward", lambda: holistic_maps(model, spec, inputs, starts, abs_spans)),
                         ("reward", call)):
            fn()
            t = time.process_time()
            for _ in range(reps):
                fn()
            out[name] = (time.process_time() - t) / reps
    return out


def _pool(runs: list[dict], key: str) -> list[float]:
    return [t for run in runs for t in run[key]]


def measure(args) -> dict:
    """Alternate the two configurations for ``args.rounds`` rounds and summarise."""
    import torch

    from saliency_r1.models.tiny import TinyConfig, tiny_checkpoint

    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="grpo_overhead_"))
    w = args.width
    cfg = TinyConfig(hidden_size=w, num_heads=w // 32, num_kv_heads=max(1, w // 64), intermediate_size=2 * w)
    if args.shape != "tiny":  # a preset's widths, the tiny tokenizer (its small vocabulary)
        from saliency_r1.models.presets import PRESETS

        p = PRESETS[args.shape]
        w = p["hidden_size"]
        cfg = TinyConfig(hidden_size=w, num_heads=p["num_attention_heads"], num_kv_heads=p["num_key_value_heads"],
                         intermediate_size=p["intermediate_size"], num_layers=args.layers or p["num_hidden_layers"],
                         vision_hidden=p["vision"]["hidden_size"],
                         vision_depth=args.vision_layers or p["vision"]["depth"])
    tiny = tiny_checkpoint(work / f"{args.shape}_w{w}_L{cfg.num_layers}", config=cfg)
    runs: dict[str, list[dict]] = {"with": [], "without": []}
    for r in range(args.rounds):
        for key in ("with", "without") if r % 2 == 0 else ("without", "with"):
            runs[key].append(_run(work, tiny, key == "with", args))
            last = runs[key][-1]
            print(f"round {r + 1}/{args.rounds} {key:>7}: median step {statistics.median(last['step_cpu']):.3f} s CPU, "
                  f"{statistics.median(last['step_wall']):.3f} s wall", file=sys.stderr)
    med = {f"{k}_{m}": statistics.median(_pool(v, f"step_{m}")) for k, v in runs.items() for m in ("cpu", "wall")}
    reward = {m: statistics.mean(_pool(runs["with"], f"reward_{m}")) for m in ("cpu", "wall")}
    one_batch = floor(tiny, args.completion_length, device=args.device, dtype=args.dtype)
    return {"one_batch_cpu_s": one_batch,
            "plain_forward_share": one_batch["plain_forward"] / med["without_cpu"],
            "median_step_s": med, "ratio_cpu": med["with_cpu"] / med["without_cpu"],
            "ratio_wall": med["with_wall"] / med["without_wall"], "saliency_reward_s": reward,
            "direct_overhead_cpu": reward["cpu"] / med["without_cpu"],
            "direct_overhead_wall": reward["wall"] / med["without_wall"],
            "steps_measured_per_config": len(_pool(runs["with"], "step_cpu")),
            "format_rate_with": statistics.mean(_pool(runs["with"], "format_rate")),
            "mean_completion_length": {k: statistics.mean(_pool(v, "completion_length")) for k, v in runs.items()},
            "mean_alignment": statistics.mean(_pool(runs["with"], "alignment")),
            "settings": {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                         "completion_length": args.completion_length, "threads": args.threads, "width": w,
                         "shape": args.shape, "layers": cfg.num_layers, "dtype": args.dtype, "device": args.device,
                         "generations": 8, "completions_per_step": 8}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=2, help="steps excluded at the start of each run")
    p.add_argument("--rounds", type=int, default=2, help="with/without pairs (alternating order)")
    p.add_argument("--completion-length", type=int, default=64, help="max_completion_length")
    p.add_argument("--width", type=int, default=128, help="decoder width (128: the tiny model; head size 32)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is robust to machine load)")
    p.add_argument("--shape", choices=("tiny", "3b", "7b"), default="tiny",
                   help="tiny: --width; 3b/7b: that model's widths (models.presets) with the tiny tokenizer")
    p.add_argument("--layers", type=int, default=None, help="decoder layers of the 3b/7b shape (default: all)")
    p.add_argument("--vision-layers", type=int, default=None, help="vision blocks of the 3b/7b shape (default: all)")
    p.add_argument("--dtype", default="float32", help="model.dtype of the runs (bfloat16 on a GPU)")
    p.add_argument("--device", default="cpu", help="device of the one-batch floor (training picks accelerate's)")
    p.add_argument("--workdir", default=None, help="where the tiny model and runs go (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    res = measure(args)
    m, r = res["median_step_s"], res["saliency_reward_s"]
    print(f"GRPO step, median over {res['steps_measured_per_config']} steps per config (tiny model, width "
          f"{args.width}, 8 completions/step of {args.completion_length} tokens, every completion traced):")
    print("                            CPU s    wall s")
    print(f"  without saliency reward: {m['without_cpu']:7.3f}  {m['without_wall']:7.3f}")
    print(f"  with saliency reward:    {m['with_cpu']:7.3f}  {m['with_wall']:7.3f}")
    print(f"  ratio with/without:      {res['ratio_cpu']:7.3f}  {res['ratio_wall']:7.3f}")
    print(f"  saliency reward itself:  {r['cpu']:7.3f}  {r['wall']:7.3f}  = {100 * res['direct_overhead_cpu']:.1f} % "
          f"(CPU) / {100 * res['direct_overhead_wall']:.1f} % (wall) of a step without it (target <= 10 %)")
    b = res["one_batch_cpu_s"]
    print(f"  one batch (CPU s): plain no-grad forward {b['plain_forward']:.3f}, traced forward "
          f"{b['traced_forward']:.3f}, whole reward {b['reward']:.3f}; a plain extra forward alone is "
          f"{100 * res['plain_forward_share']:.1f} % of a step")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
