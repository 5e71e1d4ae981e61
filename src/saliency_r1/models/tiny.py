"""The embedded tiny Qwen2.5-VL: the real transformers class built from a config, a byte-level BPE
tokenizer trained locally with the Qwen special tokens, and the real Qwen2.5-VL chat template.

It is the default model of the demo and the tests; nothing is downloaded. ``<think>`` and ``</think>``
are single added tokens (as in Qwen3); the span finder does not rely on that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ..errors import InputError
from .processor import ImageOnlyQwenVLProcessor, stamp_processor_class
from .spec import get_spec

QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The Qwen2.5-VL chat template, verbatim."""

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
THINK_TOKENS = ("<think>", "</think>")

_WORDS = (
    "red green blue yellow purple orange black white grey pink brown cyan colour color shape "
    "circle square triangle cross star diamond ring object objects small large big tiny "
    "left right above below top bottom middle centre center near far next beside between "
    "zero one two three four five six seven eight nine ten yes no how many what which is are "
    "there the a an of in on at to and or it its this that image picture label says letter "
    "word text read count see look find odd different other others same all each only so answer "
    "question think first then because I you we they helpful assistant system user"
).split()


def default_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """A small English corpus of the tiny world's vocabulary, for training the tokenizer:
    ``n`` random sentences, then three fixed lines (the system prompt, the think tags, letters/digits).

    >>> len(default_corpus(10))
    13
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(4, 14, (1,), generator=g))
        idx = torch.randint(0, len(_WORDS), (k,), generator=g).tolist()
        words = [_WORDS[i] for i in idx]
        out.append(" ".join(words).capitalize() + ("?" if idx[0] % 3 == 0 else "."))
    out += ["You are a helpful assistant.", "<think> I see it. </think> yes", "A B C D E F G H 0 1 2 3 4 5 6 7 8 9"]
    return out


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with the Qwen special tokens and ``<think>``/``</think>`` added.

    >>> tok = train_tokenizer(default_corpus(200), vocab_size=400)
    >>> tok.convert_ids_to_tokens(tok("<think>")["input_ids"])
    ['<think>']
    """
    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token=None, bos_token=None, padding_side="left")
    tok.add_tokens(list(THINK_TOKENS))
    tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.model_max_length = 4096
    return tok


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny Qwen2.5-VL. ``head_dim = hidden / heads``; mrope sections sum to head_dim/2."""

    hidden_size: int = field(default=128, metadata={"help": "decoder width d"})
    num_layers: int = field(default=4, metadata={"help": "decoder layers L"})
    num_heads: int = field(default=4, metadata={"help": "query heads H"})
    num_kv_heads: int = field(default=2, metadata={"help": "key/value heads K (GQA ratio H/K)"})
    intermediate_size: int = field(default=256, metadata={"help": "decoder MLP width"})
    vision_hidden: int = field(default=64, metadata={"help": "vision tower width"})
    vision_depth: int = field(default=2, metadata={"help": "vision tower blocks"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary before special tokens"})
    min_pixels: int = field(default=56 * 56, metadata={"help": "processor min pixels"})
    max_pixels: int = field(default=28 * 28 * 64, metadata={"help": "processor max pixels (64 merged cells)"})
    tie_word_embeddings: bool = field(default=False, metadata={"help": "tie lm_head to the embeddings"})
    init_std: Optional[float] = field(default=None, metadata={"help": (
        "re-draw every Linear / Embedding weight from N(0, std^2) after building; 0: std = 1/sqrt(fan_in) "
        "(a width-128 model learns far faster than with HF's 0.02); None: keep HF's initialisation")})


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies into (temporal, height, width) like Qwen's [16, 24, 24].

    >>> mrope_section(32), sum(mrope_section(128))
    ([4, 6, 6], 64)
    """
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tiny(config: TinyConfig | None = None, corpus: Iterable[str] | None = None, seed: int = 0):
    """Build ``(model, processor)``: a randomly initialised tiny Qwen2.5-VL and its processor.

    >>> model, processor = build_tiny()
    >>> type(model).__name__, type(processor).__name__
    ('Qwen2_5_VLForConditionalGeneration', 'ImageOnlyQwenVLProcessor')
    """
    config = config or TinyConfig()
    tokenizer = train_tokenizer(corpus if corpus is not None else default_corpus(), config.vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    head_dim = config.hidden_size // config.num_heads
    vocab = -(-len(tokenizer) // 64) * 64
    hf_config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads, max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(head_dim)},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=config.tie_word_embeddings),
        vision_config=dict(
            depth=config.vision_depth, hidden_size=config.vision_hidden, intermediate_size=2 * config.vision_hidden,
            num_heads=4, out_hidden_size=config.hidden_size, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=112, fullatt_block_indexes=[config.vision_depth - 1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=config.tie_word_embeddings)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(hf_config).eval()
    if config.init_std is not None:
        reinit_(model, config.init_std, seed)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
        do_sample=False, max_new_tokens=64)
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": config.min_pixels,
                                                     "longest_edge": config.max_pixels})
    processor = ImageOnlyQwenVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         chat_template=QWEN_CHAT_TEMPLATE)
    return model, processor


def reinit_(model: torch.nn.Module, std: float, seed: int = 0) -> torch.nn.Module:
    """Draw every ``nn.Linear`` / ``nn.Embedding`` weight from N(0, std^2) (``std=0``: 1/sqrt(fan_in)), in place.

    HF's 0.02 suits widths in the thousands; at width 128 it leaves attention logits near zero for hundreds of
    steps. Biases and norms are left as they are.

    >>> lin = reinit_(torch.nn.Sequential(torch.nn.Linear(400, 2)), 0.0)[0]
    >>> 0.03 < float(lin.weight.std()) < 0.07
    True
    """
    if std < 0:
        raise InputError(f"model.tiny.init_std must be >= 0 (0: 1/sqrt(fan_in)) or None, got {std}")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                s = std if std > 0 else mod.weight.shape[-1] ** -0.5
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * s)
    return model


def save_checkpoint(model, processor, directory: str | Path) -> Path:
    """Save as a standard checkpoint directory (config.json, safetensors, tokenizer, processor_config.json and
    the older split preprocessor_config.json, chat_template.jinja).

    Every processor/tokenizer config names the family's standard processor (``ModelSpec.processor_class``,
    e.g. ``Qwen2_5_VLProcessor``), so ``AutoProcessor`` and tools built on it (lmms-eval, vLLM) load the real
    processor. Written into a temporary sibling and renamed, so an interrupted save never leaves half a
    checkpoint.

    >>> import tempfile, json
    >>> out = save_checkpoint(*build_tiny(), tempfile.mkdtemp() + "/ckpt")
    >>> json.loads((out / "processor_config.json").read_text())["processor_class"]
    'Qwen2_5_VLProcessor'
    """
    out = Path(directory)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    processor.image_processor.save_pretrained(tmp)  # preprocessor_config.json, as hub checkpoints have
    (tmp / "chat_template.jinja").write_text(processor.chat_template)
    stamp_processor_class(tmp, get_spec(model).processor_class)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def tiny_checkpoint(directory: str | Path, config: TinyConfig | None = None, corpus=None, seed: int = 0) -> Path:
    """Build the tiny model and save it to ``directory`` (reused when it already holds one).

    >>> import tempfile
    >>> p = tiny_checkpoint(tempfile.mkdtemp() + "/tiny")
    >>> sorted(x.name for x in p.iterdir() if x.suffix == ".json")[:2]
    ['config.json', 'generation_config.json']
    """
    out = Path(directory)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    model, processor = build_tiny(config, corpus=corpus, seed=seed)
    return save_checkpoint(model, processor, out)


__all__ = ["QWEN_CHAT_TEMPLATE", "TinyConfig", "build_tiny", "save_checkpoint", "tiny_checkpoint",
           "train_tokenizer", "default_corpus", "mrope_section", "reinit_"]

