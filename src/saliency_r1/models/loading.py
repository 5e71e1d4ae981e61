"""Load a supported VLM checkpoint (full model or LoRA adapter) with its image-only processor.

Safetensors only; ``trust_remote_code`` stays off unless asked for. The model class comes from
``config.json``'s ``architectures`` and must have a spec (:mod:`saliency_r1.models.spec`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from ..errors import InputError, UnsupportedModelError
from .processor import load_processor
from .spec import SPECS

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "auto": "auto"}


def resolve_dtype(dtype) -> torch.dtype | str | None:
    """``"bf16"`` / ``torch.bfloat16`` / None -> a torch dtype (or ``"auto"``).

    >>> resolve_dtype("bf16")
    torch.bfloat16
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}")
    return _DTYPES[dtype]


def resolve_device(device) -> torch.device:
    """None -> cuda when available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _read_config(path: Path) -> dict:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise InputError(f"{path} is not a model directory (config.json missing); pass a Qwen-VL checkpoint "
                         "directory or a LoRA adapter directory")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg} is not valid JSON ({e.msg}); re-save the checkpoint") from None


def model_class(path: str | Path):
    """The transformers class named by the checkpoint's ``architectures``; unknown -> error.

    >>> import tempfile, json, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text(json.dumps({"architectures": ["Qwen2VLForConditionalGeneration"]}))
    >>> model_class(d).__name__
    'Qwen2VLForConditionalGeneration'
    """
    archs = _read_config(Path(path)).get("architectures") or []
    for name in archs:
        if name in SPECS:
            return getattr(transformers, name)
    raise UnsupportedModelError(
        f"{path}: model class {', '.join(archs) or '(none)'} is not a supported VLM; supported: "
        f"{', '.join(sorted(SPECS))}")


TRAINING_OUTPUTS = ("merged", "final")  # GRPO run dir -> merged/, SFT run dir -> final/


def resolve_model_dir(path: str | Path) -> Path:
    """``path`` itself when it holds a model (``config.json`` or ``adapter_config.json``); for a training
    output directory, its exported model: ``merged/`` (GRPO) or ``final/`` (SFT). Else ``path`` unchanged.

    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp()); (run / "merged").mkdir(); _ = (run / "merged" / "config.json").write_text("{}")
    >>> resolve_model_dir(run).name
    'merged'
    """
    path = Path(path)
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    for name in TRAINING_OUTPUTS:
        if (path / name / "config.json").is_file():
            return path / name
    return path


def load_hf(path: str | Path, device=None, dtype=None, attn_implementation: str | None = None,
            trust_remote_code: bool = False):
    """Load ``(model, processor)`` from a checkpoint or LoRA-adapter directory, in eval mode.

    A LoRA adapter directory (``adapter_config.json``) is loaded on its base model and merged. A training
    output directory (``saliency-r1 train sft|grpo --out DIR``) loads its exported model
    (:func:`resolve_model_dir`).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"model path {path} does not exist; pass a local checkpoint directory "
                         "(no hub downloads here)")
    path = resolve_model_dir(path)
    kwargs = dict(dtype=resolve_dtype(dtype) or torch.float32, use_safetensors=True,
                  trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if (path / "adapter_config.json").is_file():
        model, processor = _load_adapter(path, kwargs)
    else:
        cls = model_class(path)
        if not any(path.glob("*.safetensors")):
            raise InputError(f"{path} has no .safetensors weights; only safetensors checkpoints are loaded")
        model = cls.from_pretrained(str(path), **kwargs)
        processor = load_processor(path)
    return model.to(resolve_device(device)).eval(), processor


def _load_adapter(path: Path, kwargs: dict):
    from peft import PeftModel

    cfg = json.loads((path / "adapter_config.json").read_text())
    base = Path(cfg.get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise InputError(f"adapter {path} names base model {str(base)!r}, which is not a local directory; "
                         "fix base_model_name_or_path in adapter_config.json")
    model = model_class(base).from_pretrained(str(base), **kwargs)
    model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    proc_dir = path if (path / "preprocessor_config.json").is_file() else base
    return model, load_processor(proc_dir)


__all__ = ["load_hf", "model_class", "resolve_dtype", "resolve_device", "resolve_model_dir"]
