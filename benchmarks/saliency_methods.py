"""Seconds per sample (generation included) and peak memory of every saliency method: the paper's
Table 7 analogue, printed as ratios to ours and to generation alone.

Per sample: greedy generation of a fixed-length response (``min_new_tokens = max_new_tokens``), then
every method's map of that same response. Timings run in one process, interleaved sample by sample
(one untimed warm-up sample, then ``--samples`` timed ones), so load drift on a shared machine hits
every method alike; a method's seconds per sample = mean generation time + mean map time. Peak
memory is measured in a fresh subprocess per method (same seeded model and inputs): CUDA
``max_memory_allocated`` minus the allocation before the sample; CPU the resident high-water mark
(VmHWM, reset through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is not writable) minus the
RSS before it, after a warm-up sample. Both include generation, so ``generate`` is the floor.

Random-weight models emit no ``<think>`` tags: the generated ids are mapped onto plain tokens and
tagged ``<think>`` (first), ``</think>`` (at 75 %) and end-of-turn (last), so ``ours`` pays for its
thinking-bottleneck rollout; the token count, hence every method's cost, is unchanged.

Shapes (``--shape``): ``tiny`` (the test model); ``3b``: Qwen2.5-VL-3B widths (hidden 2048, 16 heads,
2 kv heads, intermediate 11008; vision hidden 1280, 16 heads, intermediate 3420) with ``--layers``
decoder and ``--vision-layers`` vision blocks and the tiny tokenizer's vocabulary (so generation,
which pays for the LM head at every step, is cheaper than with the real 151,936 ids: the ratios to
generation are pessimistic for the methods that never form vocabulary logits, ours included).

    python benchmarks/saliency_methods.py                                  # tiny, CPU
    python benchmarks/saliency_methods.py --shape 3b --layers 2 --vision-layers 2 --image-size 224
    python benchmarks/saliency_methods.py --shape 3b --layers 36 --vision-layers 32 --device cuda \
        --dtype bfloat16 --image-size 448 --max-new-tokens 256 --samples 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch
from _measure import hwm, hwm_reset, rss, timed

GENERATE = "generate"


def build(args):
    """The SaliencyModel of the run (rebuilt identically in every worker)."""
    from saliency_r1 import from_pretrained_objects, load_model
    from saliency_r1.models.loading import resolve_dtype

    dtype = resolve_dtype(args.dtype) or torch.float32
    if args.model:
        return load_model(args.model, device=args.device, dtype=args.dtype)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from saliency_r1.models.presets import PRESETS
    from saliency_r1.models.tiny import build_tiny, mrope_section

    tiny, processor = build_tiny()
    if args.shape == "tiny":
        return from_pretrained_objects(tiny.to(args.device, dtype), processor, name="tiny")
    p = dict(PRESETS[args.shape])
    vision = dict(p.pop("vision"), depth=args.vision_layers)
    p.update(num_hidden_layers=args.layers, vocab_size=tiny.config.text_config.vocab_size)
    t = tiny.config
    head_dim = p["hidden_size"] // p["num_attention_heads"]
    cfg = Qwen2_5_VLConfig(
        text_config=dict(p, rms_norm_eps=1e-6, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                          "mrope_section": mrope_section(head_dim)},
                         bos_token_id=t.text_config.bos_token_id, eos_token_id=t.text_config.eos_token_id,
                         pad_token_id=t.text_config.pad_token_id),
        vision_config=dict(vision, out_hidden_size=p["hidden_size"], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[i for i in (7, 15, 23, 31) if i < args.vision_layers]
                           or [args.vision_layers - 1]),
        image_token_id=t.image_token_id, video_token_id=t.video_token_id,
        vision_start_token_id=t.vision_start_token_id, vision_end_token_id=t.vision_end_token_id)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    model = model.to(dtype).eval()
    model.generation_config = tiny.generation_config
    return from_pretrained_objects(model, processor, name=f"{args.shape}-{args.layers}L")


def samples(args) -> list[tuple]:
    """(image, question) pairs from ShapesWorld's test split, resized to ``--image-size``."""
    from saliency_r1.data import generate

    out = []
    for s in generate(None, args.samples + 1, seed=0, split="test"):
        out.append((s["image"].convert("RGB").resize((args.image_size, args.image_size)), s["question"]))
    return out


def tagged(smodel, ids: list[int]) -> list[int]:
    """Keep a response with think/answer spans; else map onto plain tokens and add the tags."""
    tok = smodel.processor.tokenizer
    sp = smodel.spans(ids)
    if sp.think is not None and sp.answer is not None and smodel.image_token_id not in ids:
        return ids
    special = set(tok.all_special_ids) | set(tok.get_added_vocab().values())
    plain = [i for i in range(len(tok)) if i not in special]
    out = [plain[t % len(plain)] for t in ids]
    n = len(out)
    out[0], out[max(2, int(0.75 * n))], out[-1] = tok.convert_tokens_to_ids("<think>"), \
        tok.convert_tokens_to_ids("</think>"), tok.eos_token_id
    return out


def _generate(smodel, image, question: str, args) -> list[int]:
    from saliency_r1.attribution.inputs import prompt_inputs

    return smodel.generate(prompt_inputs(smodel.processor, [image], question), do_sample=False,
                           max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)


def _map(smodel, name: str, image, question: str, ids: list[int], args) -> None:
    from saliency_r1.evaluation.methods import compute_maps

    if name != GENERATE:
        compute_maps(smodel, name, image, question, ids, **({"n_steps": args.ig_steps} if name == "ig" else {}))


def timings(smodel, names: list[str], data: list[tuple], args) -> dict[str, dict]:
    """Seconds, interleaved: per sample one generation, then every method on that response (so load
    drift on a shared machine hits all methods alike). The first sample is a warm-up."""
    cuda = smodel.device.type == "cuda"
    gen, per = [], {n: [] for n in names}
    for k, (image, q) in enumerate(data):
        box: dict = {}
        g = timed(lambda: box.setdefault("ids", _generate(smodel, image, q, args)), cuda)
        ids = tagged(smodel, box["ids"])
        m = {n: timed(lambda n=n: _map(smodel, n, image, q, ids, args), cuda) for n in names}
        if k:
            gen.append(g)
            for n in names:
                per[n].append(m[n])
    g = statistics.mean(gen)
    out = {GENERATE: {"generate_s": g, "method_s": 0.0, "total_s": g}}
    for n in names:
        out[n] = {"generate_s": g, "method_s": statistics.mean(per[n]), "total_s": g + statistics.mean(per[n])}
    return out


def peak_memory(smodel, name: str, data: list[tuple], args) -> int:
    """Peak extra bytes of one sample (generation + map) over the memory before it, after a warm-up."""
    cuda = smodel.device.type == "cuda"
    image, q = data[0]
    _map(smodel, name, image, q, tagged(smodel, _generate(smodel, image, q, args)), args)  # warm-up
    image, q = data[1]
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base, reset_ok = rss(), hwm_reset()
    _map(smodel, name, image, q, tagged(smodel, _generate(smodel, image, q, args)), args)
    return torch.cuda.max_memory_allocated() - base if cuda else hwm(reset_ok) - base


def worker(args) -> dict:
    """Measure the peak memory of one method (``args.worker``) in this fresh process."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    smodel = build(args)
    return {"method": args.worker, "peak_extra_bytes": peak_memory(smodel, args.worker, samples(args), args)}


def report(rows: dict[str, dict], header: str) -> str:
    """Markdown table: seconds per sample (generation included), ratios to ours and to generation."""
    ours = rows.get("ours", {}).get("total_s")
    gen = rows[GENERATE]["total_s"]
    lines = [header, "", "| method | s/sample (incl. generation) | map only (s) | × ours | × generation alone "
             "| peak extra memory (MiB) |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        x_ours = f"{r['total_s'] / ours:.2f}" if ours else "n/a"
        mem = r.get("peak_extra_bytes")
        mem_s = f"{mem / 2 ** 20:.1f}" if mem is not None else "n/a"
        lines.append(f"| {name} | {r['total_s']:.3f} | {r['method_s']:.3f} | {x_ours} | {r['total_s'] / gen:.2f} "
                     f"| {mem_s} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("tiny", "3b", "7b"), default="tiny", help="random model widths")
    ap.add_argument("--model", default=None, help="a checkpoint directory instead of a random model")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers of the 3b/7b shape")
    ap.add_argument("--vision-layers", type=int, default=2, help="vision blocks of the 3b/7b shape")
    ap.add_argument("--methods", default="ours,attention,rollout,cam,gradcam,ixg,ig,tam,attnlrp",
                    help="comma-separated methods (generation alone is always measured)")
    ap.add_argument("--samples", type=int, default=3, help="timed samples per method (after one warm-up)")
    ap.add_argument("--image-size", type=int, default=168, help="square image side in pixels")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="response length (fixed)")
    ap.add_argument("--ig-steps", type=int, default=16, help="integrated-gradients steps")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--no-memory", action="store_true", help="timings only (no per-method memory subprocesses)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        with open(args.worker_out, "w") as f:
            json.dump(worker(args), f)
        return
    names = [m for m in args.methods.split(",") if m]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    smodel = build(args)
    rows = timings(smodel, names, samples(args), args)
    del smodel
    gc.collect()
    for name in [] if args.no_memory else [GENERATE] + names:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            path = tmp.name
        cmd = [sys.executable, __file__, "--worker", name, "--worker-out", path] + \
            list(argv if argv is not None else sys.argv[1:])
        subprocess.run(cmd, check=True)
        with open(path) as f:
            rows[name]["peak_extra_bytes"] = json.load(f)["peak_extra_bytes"]
        os.unlink(path)
    model = args.model or ("tiny" if args.shape == "tiny" else
                           f"{args.shape}-shaped random ({args.layers} decoder / {args.vision_layers} vision layers)")
    header = (f"{model}, {args.dtype}, {args.device}: image {args.image_size}px, {args.max_new_tokens} new tokens, "
              f"{args.samples} samples, IG {args.ig_steps} steps")
    print(report(rows, header))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "rows": rows, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
