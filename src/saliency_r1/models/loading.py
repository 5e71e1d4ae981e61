"""Load a supported VLM checkpoint (full model, LoRA adapter, or hub id in the local cache) with its processor.

Safetensors only; ``trust_remote_code`` stays off unless asked for. The model class comes from
``config.json``'s ``architectures`` and must have a spec (:mod:`saliency_r1.models.spec`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import transformers

from ..errors import InputError, UnsupportedModelError
from .processor import has_processor_files, load_processor
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


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_cache_dir() -> str | None:
    """The hub cache to search: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, read now (None: huggingface_hub's
    default).

    >>> import os, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {"HF_HOME": "/data/hf"}, clear=True):
    ...     hub_cache_dir()
    '/data/hf/hub'
    """
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def resolve_model_path(path_or_id: str | Path) -> Path:
    """A local directory as is; a hub id (``org/name``) as its snapshot in the local HF cache (offline, no
    download); else one :class:`InputError` saying how to get it.

    >>> import tempfile
    >>> resolve_model_path(tempfile.gettempdir()).is_dir()
    True
    """
    path = Path(path_or_id)
    if path.exists():
        return path
    text = str(path_or_id)
    if not HUB_ID.match(text):
        raise InputError(f"model path {text} does not exist; pass a local checkpoint directory or a hub id "
                         "(org/name) already in the Hugging Face cache")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        return Path(snapshot_download(text, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        where = cache or "the default Hugging Face cache"
        raise InputError(f"{text} is neither a local directory nor in the Hugging Face cache ({where}); "
                         f"download it first with `hf download {text}` (older huggingface_hub: "
                         f"`huggingface-cli download {text}`), or pass its local directory") from None


def load_hf(path: str | Path, device=None, dtype="auto", attn_implementation: str | None = None,
            trust_remote_code: bool = False, device_map=None, **from_pretrained_kwargs):
    """Load ``(model, processor)`` from a checkpoint directory, LoRA-adapter directory or cached hub id, in
    eval mode.

    Arguments mean what they mean to ``from_pretrained``: ``dtype="auto"`` is the checkpoint's own dtype
    (``config.json``'s ``dtype``/``torch_dtype``), None is torch's default dtype (float32); ``device_map``
    (``"auto"``, ``"cuda:0"``, a dict) places the weights, in which case ``device`` must be None. Without a
    ``device_map`` the model is moved to ``device`` (None: cuda when available, else cpu). Other keyword
    arguments go to ``from_pretrained`` unchanged.

    A LoRA adapter directory (``adapter_config.json``) is loaded on its base model and merged. A training
    output directory (``saliency-r1 train sft|grpo --out DIR``) loads its exported model
    (:func:`resolve_model_dir`).
    """
    if device_map is not None and device is not None:
        raise InputError(f"both device={device!r} and device_map={device_map!r} given; pass one of them")
    path = resolve_model_dir(resolve_model_path(path))
    kwargs = dict(from_pretrained_kwargs, dtype=_hf_dtype(dtype), use_safetensors=True,
                  trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    if (path / "adapter_config.json").is_file():
        model, processor = _load_adapter(path, kwargs)
    else:
        cls = model_class(path)
        if not any(path.glob("*.safetensors")):
            raise InputError(f"{path} has no .safetensors weights; only safetensors checkpoints are loaded")
        model = cls.from_pretrained(str(path), **kwargs)
        processor = load_processor(path)
    if device_map is None:
        model = model.to(resolve_device(device))
    return model.eval(), processor


def _hf_dtype(dtype):
    resolved = resolve_dtype(dtype)
    return torch.get_default_dtype() if resolved is None else resolved


def _load_adapter(path: Path, kwargs: dict):
    from peft import PeftModel

    cfg = json.loads((path / "adapter_config.json").read_text())
    name = cfg.get("base_model_name_or_path") or ""
    try:
        base = resolve_model_path(name) if name else None
    except InputError as e:
        raise InputError(f"adapter {path} names base model {name!r}: {e}") from None
    if base is None or not (base / "config.json").is_file():
        raise InputError(f"adapter {path} names base model {name!r}, which is not a model directory; "
                         "fix base_model_name_or_path in adapter_config.json")
    if not (path / "adapter_model.safetensors").is_file():
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        why = (f"holds only pickle weights ({', '.join(sorted(pickled))}), which can run code when loaded"
               if pickled else "has no adapter_model.safetensors")
        raise InputError(f"adapter {path} {why}; only safetensors adapters are loaded: re-save it with "
                         "save_pretrained(..., safe_serialization=True)")
    model = model_class(base).from_pretrained(str(base), **kwargs)
    model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()  # the safetensors file (checked)
    return model, load_processor(path if has_processor_files(path) else base)


__all__ = ["hub_cache_dir", "load_hf", "model_class", "resolve_dtype", "resolve_device", "resolve_model_dir",
           "resolve_model_path"]
