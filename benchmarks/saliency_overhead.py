"""Tracer overhead: plain forward vs forward with the tracer vs the naive eager implementation.

One run, same model and inputs, printing ratios. Targets (issue 2): tracer time <= 1.15 x plain
forward; tracer memory overhead <= 10 % of the forward's peak; on a GPU, 7B shape, >= 1000 visual and
512 response tokens: tracer overhead <= 5 %.

All three run the same teacher-forced forward over prompt + response with ``logits_to_keep=1`` (a
prefill: hidden states, no full-vocabulary logits), so the difference is the saliency work alone.
Peak memory: CUDA ``max_memory_allocated``; CPU the process's resident high-water mark (VmHWM),
reset before each measurement through ``/proc/self/clear_refs``.

    python benchmarks/saliency_overhead.py                       # tiny + 3B widths (4 layers), CPU
    python benchmarks/saliency_overhead.py --preset 7b --device cuda --dtype bfloat16 --grid 32 32 \
        --response 512 --modes plain,tracer
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics

import torch
from _measure import hwm, hwm_reset, rss, timed

from saliency_r1.attribution.decompose import trace
from saliency_r1.attribution.maps import build_plan
from saliency_r1.grammar import Spans
from saliency_r1.models.presets import IMAGE_PAD, random_vlm, synthetic_inputs
from saliency_r1.models.spec import get_spec


def _peak(fn, cuda: bool) -> tuple[int, int]:
    """(base, peak) bytes of one call: CUDA allocator stats, or the reset RSS high-water mark."""
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return base, torch.cuda.max_memory_allocated()
    base = rss()
    ok = hwm_reset()
    fn()
    return base, hwm(ok)


def measure(fns: dict, device: torch.device, repeats: int) -> dict:
    """Median seconds per mode, the modes interleaved round by round (so load drift hits all alike),
    after one warm-up each; then the peak memory of one call per mode."""
    cuda = device.type == "cuda"
    times = {m: [] for m in fns}
    for fn in fns.values():
        fn()
    for r in range(repeats):
        for m, fn in fns.items():
            if m == "naive" and r % 3:
                continue  # the naive path is slow: a third of the rounds
            times[m].append(timed(fn, cuda))
    out = {}
    for m, fn in fns.items():
        base, peak = _peak(fn, cuda)
        out[m] = {"seconds": statistics.median(times[m]), "peak_bytes": peak, "base_bytes": base}
    return out


def run(preset: str, layers: int | None, vision_depth: int | None, grid: tuple[int, int], n_response: int,
        device: str, dtype: str, repeats: int, modes: list[str], attn_implementation: str = "sdpa") -> dict:
    dev, dt = torch.device(device), getattr(torch, dtype)
    torch.manual_seed(0)
    model = random_vlm(preset, n_layers=layers, vision_depth=vision_depth, dtype=dt, device=dev,
                       attn_implementation=attn_implementation)
    spec = get_spec(model)
    inputs, rs, think, answer = synthetic_inputs(model, grid, n_prompt=48, n_response=n_response)
    plan = build_plan(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu(), [rs], [Spans(think, answer)],
                      IMAGE_PAD).to(dev)

    def plain():
        with torch.no_grad():
            model(**inputs, use_cache=False, logits_to_keep=1)

    def tracer():
        trace(model, spec, inputs, plan)

    def naive():
        from saliency_r1.attribution.reference import naive_trace

        model.set_attn_implementation("eager")
        try:
            naive_trace(model, spec, inputs, plan)
        finally:
            model.set_attn_implementation(attn_implementation)

    fns = {"plain": plain, "tracer": tracer, "naive": naive}
    res = measure({m: fns[m] for m in modes}, dev, repeats)
    T = inputs["input_ids"].shape[1]
    out = {"preset": preset, "layers": spec.n_layers(model), "device": str(dev), "dtype": dtype,
           "attn_implementation": attn_implementation,
           "tokens": T, "visual": grid[0] * grid[1], "response": n_response, "results": res}
    p = res["plain"]
    for m in modes:
        if m == "plain":
            continue
        r = res[m]
        out[f"{m}_time_ratio"] = r["seconds"] / p["seconds"]
        out[f"{m}_mem_overhead"] = (r["peak_bytes"] - p["peak_bytes"]) / p["peak_bytes"]
        act_p = p["peak_bytes"] - p["base_bytes"]
        # below 1 MiB the resident-set reading is allocator noise, not activations
        out[f"{m}_activation_ratio"] = (r["peak_bytes"] - r["base_bytes"]) / act_p if act_p > 2**20 else None
    return out


def _print(row: dict) -> None:
    res = row["results"]
    print(f"\n{row['preset']} ({row['layers']} layers, {row['dtype']}, {row['device']}): T={row['tokens']}, "
          f"V={row['visual']}, response={row['response']}")
    for m, r in res.items():
        print(f"  {m:7s} {r['seconds'] * 1e3:9.1f} ms   peak {r['peak_bytes'] / 2**20:9.1f} MiB "
              f"(+{(r['peak_bytes'] - r['base_bytes']) / 2**20:8.1f} MiB over the loaded model)")
    for m in res:
        if m != "plain":
            act = row[f"{m}_activation_ratio"]
            print(f"  {m}/plain: time x{row[f'{m}_time_ratio']:.3f}, peak memory "
                  f"{100 * row[f'{m}_mem_overhead']:+.1f} %, activation memory "
                  + (f"x{act:.2f}" if act is not None else "n/a (under 1 MiB)"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", help="tiny, 3b or 7b (repeatable); default: tiny and 3b")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default: tiny 4, 3b 4, 7b all)")
    ap.add_argument("--vision-depth", type=int, default=None, help="vision blocks (default: 2 on CPU)")
    ap.add_argument("--grid", type=int, nargs=2, default=None, help="merged grid h w (visual tokens = h*w)")
    ap.add_argument("--response", type=int, default=None, help="response tokens")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--modes", default="plain,tracer,naive")
    ap.add_argument("--attn", default="sdpa", help="attention implementation: sdpa, eager or flash_attention_2")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for preset in args.preset or ["tiny", "3b"]:
        cpu_defaults = {"tiny": ((6, 6), 64, None, None), "3b": ((16, 16), 128, 4, 2), "7b": ((32, 32), 512, None, None)}
        grid, resp, layers, vdepth = cpu_defaults[preset]
        row = run(preset, args.layers or layers, args.vision_depth or vdepth, tuple(args.grid or grid),
                  args.response or resp, args.device, args.dtype, args.repeats, args.modes.split(","), args.attn)
        _print(row)
        rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
