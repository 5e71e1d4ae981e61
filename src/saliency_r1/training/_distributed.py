"""Several processes (``accelerate launch``): full weights under DeepSpeed ZeRO-3 before an export.

Under ZeRO-3 every process holds only a shard of each parameter (``param.data`` is an empty tensor, the shard
lives in ``param.ds_tensor`` and the parameter carries ``ds_id``); merging a LoRA adapter or saving the model
from that state would write empty or wrong weights. :func:`full_weights` gathers them, as TRL does before it
merges an adapter for vLLM (``deepspeed.zero.GatheredParameters``). Without ZeRO-3 (one process, DDP, ZeRO-1/2)
it does nothing, and deepspeed is never imported (it is the optional ``[deepspeed]`` extra).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


def process_state(args):
    """The ``accelerate.PartialState`` that the Trainer built from ``args`` will use (one per process under
    ``accelerate launch``). Take it from the args, not from ``PartialState()`` made earlier: on CPU only
    ``use_cpu`` selects the gloo process group (a bare ``PartialState()`` there is single-process), and
    ``TrainingArguments`` resets any earlier state anyway.

    >>> from transformers import TrainingArguments
    >>> process_state(TrainingArguments("out", use_cpu=True, report_to=[])).num_processes
    1
    """
    _ = args.device  # sets up the process group
    return args.distributed_state


def partitioned_parameters(model) -> list:
    """The parameters of ``model`` that ZeRO-3 has partitioned (they carry ``ds_id``); empty without ZeRO-3.

    >>> import torch
    >>> partitioned_parameters(torch.nn.Linear(2, 2))
    []
    """
    return [p for p in model.parameters() if hasattr(p, "ds_id")]


@contextmanager
def full_weights(model) -> Iterator[object]:
    """Inside the block every parameter of ``model`` holds its full tensor on every process.

    ZeRO-3: ``deepspeed.zero.GatheredParameters(params, modifier_rank=None)`` (collective: **every** process must
    enter, even those that then write nothing; changes made inside are not broadcast back, which is what an
    export wants). Memory: the whole model is materialised on each device for the block (a 7B model in bf16:
    ~15 GB per GPU). Otherwise a no-op.

    >>> import torch
    >>> lin = torch.nn.Linear(2, 2)
    >>> with full_weights(lin) as m:
    ...     m is lin
    True
    """
    params = partitioned_parameters(model)
    if not params:
        yield model
        return
    with _deepspeed().zero.GatheredParameters(params, modifier_rank=None):
        yield model


def check_saved_weights(folder) -> None:
    """One line (:class:`~saliency_r1.errors.InputError`) when ``trainer.save_model(folder)`` wrote no weights:
    what ZeRO-3 does when ``zero3_save_16bit_model`` (``stage3_gather_16bit_weights_on_model_save``) is off
    (it saves DeepSpeed shards instead, which nothing here can merge).

    >>> import tempfile
    >>> check_saved_weights(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: ...
    """
    from pathlib import Path

    from safetensors import safe_open

    from ..errors import InputError

    files = sorted(Path(folder).glob("*.safetensors"))
    counts = []
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            counts.append(len(list(fh.keys())))
    if not sum(counts):
        raise InputError(f"{folder} holds no weights after saving; under DeepSpeed ZeRO-3 set "
                         "zero3_save_16bit_model: true in the accelerate config (configs/accelerate/zero3.yaml "
                         "does), then rerun the same command: it resumes from the last checkpoint")


def _deepspeed():
    """The ``deepspeed`` module (installed whenever a parameter is partitioned; the tests substitute a fake)."""
    import deepspeed

    return deepspeed


__all__ = ["process_state", "partitioned_parameters", "full_weights", "check_saved_weights"]
