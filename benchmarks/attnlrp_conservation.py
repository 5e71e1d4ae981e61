"""AttnLRP's relevance budget on a trained model: where the explained logit goes.

For each record of a faithfulness run (its sample and greedy response), :func:`attnlrp_relevance` with
``audit=True`` splits ``F`` (the mean answer-token logit) into the input relevances ``Σ_t R_t``, the
linears' bias terms ``B`` and the softmax's Taylor bias terms ``S`` (docs/baselines.md); the residual
``F − Σ R − B − S`` checks the books. Printed as fractions of ``F`` (mean, min, max over the records),
in float32 and float64.

    python benchmarks/attnlrp_conservation.py --model runs/demo/seed0/sft/final \\
        --data runs/eval/shapes_demo_eval100 --records runs/eval/faith_sft100 --n 30
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="the ShapesWorld export the records were scored on")
    ap.add_argument("--records", required=True, type=Path, help="folder with records.jsonl of eval faithfulness")
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from saliency_r1 import load_model
    from saliency_r1.data import load
    from saliency_r1.evaluation import prepare
    from saliency_r1.evaluation.attnlrp import attnlrp_relevance

    records = [json.loads(line) for line in (args.records / "records.jsonl").read_text().splitlines()][:args.n]
    samples = {s["id"]: s for s in load(args.data, format="shapes").samples}
    for dtype in (torch.float32, torch.float64):
        sm = load_model(args.model, dtype=dtype)
        rows = []
        for rec in records:
            s = samples[rec["id"]]
            rel = attnlrp_relevance(sm, prepare(sm, s["image"], s["question"], rec["response_ids"]), audit=True)
            f = rel.explained
            rows.append([f, float(rel.tokens.sum()) / f, rel.bias / f, rel.softmax / f, abs(rel.residual / f),
                         float(rel.tokens[rel.visual].sum()) / f])
        a = np.array(rows)  # (n, 6)

        def stat(j: int) -> str:
            return f"{a[:, j].mean():.3f} [{a[:, j].min():.3f}, {a[:, j].max():.3f}]"

        print(f"{dtype}, n={len(a)}: F mean {a[:, 0].mean():.3f}; as fractions of F: inputs {stat(1)}, "
              f"biases {stat(2)}, softmax {stat(3)}, visual tokens {stat(5)}; |residual|/|F| max {a[:, 4].max():.1e}")


if __name__ == "__main__":
    main()
