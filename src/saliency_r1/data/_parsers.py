"""One parser per input format: ``parser(row: dict, ctx) -> list[Sample]``; raise ``Skip`` to skip a row.

The format conventions are documented in :mod:`saliency_r1.data.loaders`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import InputError
from . import _boxes
from ._context import (Ctx, Skip, answer_text, check_dims, clean, convert, load_image, parse, split_response,
                       strip_image_tags)
from ._reading import json_rows
from .schema import Sample

HUMAN = {"human", "user"}
GPT = {"gpt", "assistant", "model"}
_COT_PROMPT = re.compile(r"\s*Please (?:think step by step and )?provide the bounding box coordinate of the "
                         r"region that can help you answer the question better\.?", re.IGNORECASE)
_BOX_TEXT = re.compile(r"^\s*\[\s*[-+\d.eE]+\s*(?:,\s*[-+\d.eE]+\s*){3}\]\s*$")
BOX_FORMATS = {"normalised": "normalised", "normalized": "normalised", "norm": "normalised",
               "norm_xyxy": "normalised", "square_padded": "square_padded", "visual_cot": "square_padded",
               "pixels": "pixels", "pixel": "pixels", "xyxy": "pixels"}


def _sample(image: Any, question: str, answer: str, boxes: list, width: int, height: int, source: str,
            sid: str, reasoning: Optional[str] = None, masks: Optional[list] = None) -> Sample:
    return {"image": image, "question": question, "answer": answer, "boxes": boxes, "masks": masks,
            "reasoning": reasoning, "source": source, "id": sid, "width": int(width), "height": int(height)}


def first(row: dict, *keys: str) -> Any:
    """The value of the first key present and not None (Parquet and Arrow rows carry every
    column of the table, None where a row has no value)."""
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _turns(row: dict) -> list[tuple[str, str]]:
    """``(role, text)`` per turn, roles lower-cased (``from``/``value`` or ``role``/``content``)."""
    conv = first(row, "conversations", "messages")
    if not isinstance(conv, list) or not conv:
        raise Skip("conversations", "missing or not a non-empty list")
    out = []
    for k, turn in enumerate(conv):
        if not isinstance(turn, dict):
            raise Skip("conversations", f"turn {k} is not an object")
        role = str(first(turn, "from", "role") or "").lower()
        text = first(turn, "value", "content")
        if not isinstance(text, str):
            raise Skip("conversations", f"turn {k} has no text")
        out.append((role, text))
    return out


def _sid(row: dict, ctx: Ctx, *keys: str) -> str:
    for k in keys:
        if row.get(k) is not None and str(row[k]).strip():
            return str(row[k]).strip()
    return ctx.default_id()


def visual_cot(row: dict, ctx: Ctx) -> list[Sample]:
    """Visual-CoT LLaVA-style rows: ``image = [path, "path###[x1, y1, x2, y2]"]`` + 4 turns."""
    entries = row.get("image")
    entries = [e for e in (entries if isinstance(entries, list) else [entries]) if isinstance(e, str)]
    if not entries:
        raise Skip("image", "missing (expected [path, 'path###[x1, y1, x2, y2]'])")
    path = entries[0].split("###", 1)[0]
    pixel_box = next((e.split("###", 1)[1] for e in entries if "###" in e), None)
    turns = _turns(row)
    humans = [t for r, t in turns if r in HUMAN]
    gpts = [t.strip() for r, t in turns if r in GPT]
    if not humans:
        raise Skip("conversations", "no human turn")
    question = strip_image_tags(_COT_PROMPT.sub("", humans[0]))
    norm_box = gpts[0] if gpts and _BOX_TEXT.match(gpts[0]) else None
    answers = gpts[1:] if norm_box is not None else gpts
    if not answers:
        raise Skip("answer", "no answer turn (expected the last gpt turn)")
    answer = answer_text(answers[-1])
    image, w, h = load_image(ctx, path)
    check_dims(ctx, row, w, h)
    if pixel_box is not None:
        boxes = parse(pixel_box)
    elif norm_box is not None:
        boxes = convert(parse(norm_box), "square_padded", w, h, "boxes")
    else:
        raise Skip("boxes", "no '###[x1, y1, x2, y2]' in image and no normalised box in the first gpt turn")
    dataset = row.get("dataset") or (path.split("/")[1] if path.startswith("cot/") and path.count("/") >= 2 else "")
    source = f"visual_cot/{dataset}" if dataset else "visual_cot"
    return [_sample(image, question, answer, clean(ctx, boxes, w, h), w, h, source,
                    _sid(row, ctx, "question_id", "id"))]


_V7W = (("cot/visual7w/", "cot/v7w/"), ("cot/v7w/", "cot/visual7w/"))  # both spellings are published


def _answer_file(ctx: Ctx) -> Path:
    """The benchmark JSON holding the answers of the benchmark_det file being read."""
    stem = ctx.file.stem if ctx.file is not None else "{name}"
    given = ctx.opts.get("answers")
    if given is not None:
        path = Path(str(given)).expanduser()
        path = path / f"{stem}.json" if path.is_dir() else path
    elif ctx.file is not None:
        path = ctx.file.parent.parent / "benchmark" / f"{stem}.json"  # viscot_benchmark/{benchmark,benchmark_det}/
    else:
        path = Path(f"viscot_benchmark/benchmark/{stem}.json")
    if not path.is_file():
        raise InputError(f"visual_cot_det: {path} not found; benchmark_det rows carry no answer, so give the "
                         f"matching viscot_benchmark/benchmark/{stem}.json with options: {{answers: <file or folder>}}")
    return path


def _answers(ctx: Ctx) -> tuple[Path, dict[str, str]]:
    """``question_id -> answer`` (the last gpt turn that is not the box) of the benchmark file."""
    path = _answer_file(ctx)
    key = f"answers:{path}"
    if key not in ctx.cache:
        table: dict[str, str] = {}
        for _, row, error in json_rows(path):
            if error is not None or not isinstance(row, dict) or row.get("question_id") is None:
                continue
            try:
                gpts = [t.strip() for r, t in _turns(row) if r in GPT and not _BOX_TEXT.match(t)]
            except Skip:
                continue
            if gpts:
                table[str(row["question_id"])] = gpts[-1]
        ctx.cache[key] = table
    return path, ctx.cache[key]


def visual_cot_det(row: dict, ctx: Ctx) -> list[Sample]:
    """Visual-CoT benchmark_det rows ``{img_path, expression, bbox, height, width, question_id,
    split}``; the answer comes from the matching benchmark file (same ``question_id``)."""
    question = strip_image_tags(row.get("expression"), "expression")
    rel = row.get("img_path")
    if not isinstance(rel, str) or not rel.strip():
        raise Skip("img_path", "missing or not a string path")
    answer = row.get("answer")
    if answer is None:
        if row.get("question_id") is None:
            raise Skip("question_id", "missing (the answer is looked up by it)")
        path, table = _answers(ctx)
        answer = table.get(str(row["question_id"]))
        if answer is None:
            raise Skip("answer", f"question_id {row['question_id']} not in {path.name}")
    answer = answer_text(answer)
    image, w, h = load_image(ctx, rel, [rel] + [b + rel[len(a):] for a, b in _V7W if rel.startswith(a)])
    check_dims(ctx, row, w, h)
    boxes = clean(ctx, parse(row.get("bbox"), "bbox"), w, h, "bbox")
    name = ctx.file.stem if ctx.file is not None else (rel.split("/")[1] if rel.startswith("cot/") else "")
    source = f"visual_cot/{name}" if name else "visual_cot"
    return [_sample(image, question, answer, boxes, w, h, source, _sid(row, ctx, "question_id", "id"))]


def visual_cot_meta(row: dict, ctx: Ctx) -> list[Sample]:
    """Visual-CoT metadata rows ``{question, answer, bboxs, image, width, height, dataset}``."""
    question = strip_image_tags(row.get("question"))
    answer = answer_text(row.get("answer"))
    rel, dataset = row.get("image"), str(row.get("dataset") or "")
    if not isinstance(rel, str) or not rel.strip():
        raise Skip("image", "missing or not a string path")
    folder = "textvqa" if dataset == "textcap" else dataset  # Visual-CoT keeps textcap images with textvqa
    candidates = [rel] + ([f"{folder}/{rel}", f"cot/{folder}/{rel}"] if folder else [])
    image, w, h = load_image(ctx, rel, candidates)
    check_dims(ctx, row, w, h)
    raw = first(row, "bboxs", "bbox", "boxes")
    if isinstance(raw, list) and not raw:
        raise Skip("bboxs", "empty list")
    boxes = clean(ctx, parse(raw, "bboxs"), w, h, "bboxs")
    source = f"visual_cot/{dataset}" if dataset else "visual_cot"
    sid = _sid(row, ctx, "question_id", "id")
    return [_sample(image, question, answer, boxes, w, h, source, sid)]


def saliency_r1_8k(row: dict, ctx: Ctx) -> list[Sample]:
    """saliency-r1-8k rows ``{problem, solution, image, bbox}``; bbox normalised unless told otherwise."""
    question = strip_image_tags(first(row, "problem", "question"), "problem")
    reasoning, answer = split_response(first(row, "solution", "answer"))
    image, w, h = load_image(ctx, row.get("image"))
    check_dims(ctx, row, w, h)
    fmt_name = row.get("box_format") or row.get("bbox_format") or ctx.opts.get("box_format") or "normalised"
    fmt = BOX_FORMATS.get(str(fmt_name).lower())
    if fmt is None:
        raise Skip("box_format", f"unknown {fmt_name!r}; use one of {sorted(set(BOX_FORMATS.values()))}")
    raw = first(row, "bbox", "bboxs", "boxes")
    boxes = clean(ctx, convert(parse(raw, "bbox"), fmt, w, h), w, h, "bbox")
    dataset = row.get("dataset")
    source = f"saliency_r1_8k/{dataset}" if dataset else "saliency_r1_8k"
    return [_sample(image, question, answer, boxes, w, h, source, _sid(row, ctx, "id", "question_id"), reasoning)]


def _pairs(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(question, response) pairs of a strictly alternating human/gpt conversation (system turns dropped)."""
    turns = [t for t in turns if t[0] not in {"system"}]
    if len(turns) % 2 or not turns:
        raise Skip("conversations", f"{len(turns)} turns; expected human/gpt pairs")
    pairs = []
    for k in range(0, len(turns), 2):
        (r1, q), (r2, a) = turns[k], turns[k + 1]
        if r1 not in HUMAN or r2 not in GPT:
            raise Skip("conversations", f"turns {k}-{k + 1} are {r1}/{r2}; expected human/gpt")
        pairs.append((q, a))
    return pairs


def llava(row: dict, ctx: Ctx) -> list[Sample]:
    """LLaVA conversations, split into single (question, answer) turns; long responses filtered."""
    value = first(row, "image", "images")  # LLaVA-CoT / Vision-R1 'image', Mulberry 'images'
    if value is None or value == []:
        raise Skip("image", "missing (text-only rows are not supported)")
    pairs = _pairs(_turns(row))
    image, w, h = load_image(ctx, value)
    limit = ctx.opts.get("max_response_words", 200)
    rid = _sid(row, ctx, "id")
    out = []
    for k, (q, resp) in enumerate(pairs):
        if limit is not None and len(resp.split()) > limit:
            ctx.filtered += 1
            continue
        try:
            question = strip_image_tags(q)
            reasoning, answer = split_response(resp)
        except Skip as e:
            ctx.note(e.field, f"turn {k}: {e.reason}")
            continue
        sid = rid if len(pairs) == 1 else f"{rid}-{k}"
        out.append(_sample(image, question, answer, [], w, h, "llava", sid, reasoning))
    return out


def _masks(value: Any) -> Optional[list]:
    """None or a list of polygons ``[[x, y], ...]`` (3+ numeric points each)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise Skip("masks", "expected a list of polygons or null")
    out = []
    for k, poly in enumerate(value):
        try:
            pts = [[_boxes._num(p[0]), _boxes._num(p[1])] for p in poly if len(p) == 2]
        except (TypeError, ValueError, KeyError):
            raise Skip("masks", f"polygon {k} is not a list of [x, y] numbers") from None
        if len(pts) < 3 or len(pts) != len(poly):
            raise Skip("masks", f"polygon {k} needs 3 or more [x, y] points")
        out.append(pts)
    return out


def shapes(row: dict, ctx: Ctx) -> list[Sample]:
    """Rows of ShapesWorld's ``export`` (the schema itself, image relative to the data file)."""
    question = strip_image_tags(row.get("question"))
    answer = answer_text(row.get("answer"))
    image, w, h = load_image(ctx, row.get("image"))
    check_dims(ctx, row, w, h)
    raw = row.get("boxes")
    if not isinstance(raw, list):
        raise Skip("boxes", "expected a list of [x1, y1, x2, y2] (may be empty)")
    boxes = clean(ctx, parse(raw), w, h) if raw else []
    reasoning = row.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, str):
        raise Skip("reasoning", "expected a string or null")
    return [_sample(image, question, answer, boxes, w, h, str(row.get("source") or "shapes"),
                    _sid(row, ctx, "id"), reasoning, _masks(row.get("masks")))]


PARSERS: dict[str, Callable[[dict, Ctx], list[Sample]]] = {
    "visual_cot": visual_cot, "visual_cot_det": visual_cot_det, "visual_cot_meta": visual_cot_meta,
    "saliency_r1_8k": saliency_r1_8k,
    "llava": llava, "shapes": shapes,
}

__all__: list[str] = []
