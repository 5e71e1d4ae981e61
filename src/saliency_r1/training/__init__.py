"""Training: the SFT cold start (:mod:`.sft`, configs in :mod:`.sft_config`, batches in :mod:`.collate`),
GRPO with the saliency reward (:mod:`.grpo`, configs in :mod:`.grpo_config`), and the model/data/LoRA sections
both share (:mod:`.run_config`). The quick held-out check is :mod:`saliency_r1.evaluation.quick`.

Submodules are imported on use: ``import saliency_r1.training`` does not load TRL.

>>> from saliency_r1.training.sft import SFTRunConfig, train_sft
>>> SFTRunConfig().lora.enabled
False
"""

from __future__ import annotations
