"""Parity of ``saliency_r1``'s AttnLRP port with the authors' own ``lxt.efficient`` patch functions.

``lxt`` cannot be imported with transformers 5 (docs/baselines.md), but its two rule files import only
torch: this script loads ``lxt/efficient/rules.py`` and ``lxt/efficient/patches.py`` from a checkout of
rachtibat/LRP-eXplains-Transformers (no package ``__init__``), applies ``gated_mlp_forward`` and
``rms_norm_forward`` to the decoder's MLPs and norms and ``patch_attention`` to the Qwen2.5-VL modeling
module (lxt's ``qwen2`` patch map, moved to the VL decoder), and compares the input relevances of one
teacher-forced example with :func:`saliency_r1.evaluation.attnlrp.attnlrp_relevance`. lxt's patches
are global and irreversible, so our relevances are computed first and the process ends after.

    git clone https://github.com/rachtibat/LRP-eXplains-Transformers /tmp/lxt   # at f0434417 for the docs' figures
    python benchmarks/attnlrp_lxt_parity.py --lxt /tmp/lxt                     # tiny model, float64
    python benchmarks/attnlrp_lxt_parity.py --lxt /tmp/lxt --model runs/demo/seed0/sft/final --dtype float32

Measured (docs/baselines.md; a hand-made 168 x 112 image, answer tokens): max |difference| 3e-10 (tiny model,
float64, random q/k/v biases), 9e-10 (float32); the demo's 1200-step cold start in float32: 9e-8 as trained
(``--bias-std 0``, max |R| 1.6), 2e-8 with random biases (max |R| 0.70); correlation 1.000000000000 each time.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import torch


def _load_lxt(root: Path):
    for name in ("lxt", "lxt.efficient"):
        sys.modules.setdefault(name, types.ModuleType(name))
    mods = {}
    for name in ("rules", "patches"):
        spec = importlib.util.spec_from_file_location(f"lxt.efficient.{name}", root / "lxt" / "efficient" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["patches"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lxt", required=True, type=Path, help="checkout of rachtibat/LRP-eXplains-Transformers")
    ap.add_argument("--model", default=None, help="checkpoint (default: a fresh tiny model)")
    ap.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    ap.add_argument("--bias-std", type=float, default=0.5, help="random q/k/v biases (0: keep the model's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    patches = _load_lxt(args.lxt)

    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as qwen_vl
    from PIL import Image

    from saliency_r1 import load_model, tiny_checkpoint
    from saliency_r1.evaluation import prepare
    from saliency_r1.evaluation.attnlrp import attnlrp_relevance
    from saliency_r1.evaluation.common import embeds_inputs, visual_embeddings

    sm = load_model(args.model or tiny_checkpoint(tempfile.mkdtemp() + "/tiny"), dtype=getattr(torch, args.dtype))
    lm = sm.hf.model.language_model
    if args.bias_std:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in lm.named_parameters():
                if name.endswith("bias"):
                    p.copy_(args.bias_std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    image = Image.new("RGB", (168, 112), (240, 240, 240))
    image.paste((220, 30, 30), (56, 28, 112, 84))
    ex = prepare(sm, image, "What colour is the square?", "<think>I see a red square</think>red")
    ours = attnlrp_relevance(sm, ex).tokens  # (T,)

    for layer in lm.layers:  # lxt's patches: global and irreversible from here on
        layer.mlp.forward = types.MethodType(patches.gated_mlp_forward, layer.mlp)
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.forward = types.MethodType(patches.rms_norm_forward, norm)
    lm.norm.forward = types.MethodType(patches.rms_norm_forward, lm.norm)
    assert patches.patch_attention(qwen_vl)
    box = {}

    def leaf(mod, a, kw):
        box["e"] = kw["inputs_embeds"].detach().requires_grad_(True)
        kw["inputs_embeds"] = box["e"]
        return a, kw

    lm.register_forward_pre_hook(leaf, with_kwargs=True)
    e = visual_embeddings(sm, ex)[None]  # (1, V, D)
    rows, targets = ex.rows("answer")
    with torch.enable_grad():
        hidden = sm.hf.model(**embeds_inputs(ex, e, e.device), use_cache=False).last_hidden_state  # (1, T, D)
        f = sm.hf.lm_head(hidden[0, rows]).gather(-1, targets[:, None]).mean()
        f.backward()
    theirs = (box["e"] * box["e"].grad).sum(-1)[0].detach().double()  # (T,)
    corr = float(torch.corrcoef(torch.stack([theirs, ours]))[0, 1])
    print(f"{args.dtype}: sum R ours {float(ours.sum()):.6g} lxt {float(theirs.sum()):.6g}; max |diff| "
          f"{float((theirs - ours).abs().max()):.2e} (max |R| {float(theirs.abs().max()):.3e}); corr {corr:.12f}")


if __name__ == "__main__":
    main()
