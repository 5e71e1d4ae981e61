"""Can the saliency reward see the reasoning on this model? The method's precondition, measured (issue 13).

R_saliency steers a policy only through the text it samples, and the holistic map reaches the image
through the thinking tokens (method.md §2: Â = a[A, J] @ a[J, V], weighted by the value x logit factor
s = ⟨v_p, W_O^⊤ u_i⟩ / σ_i). That only rewards focused reasoning if a thinking token that names an object
looks at that object. Four measurements, on pairs of a focused and a distracted trace of the same scene
(teacher-forced, same answer; :func:`saliency_r1.evaluation.focus.paired_traces` for ShapesWorld):

(a) **object-specific attention.** For each span of thinking tokens that names an object (ShapesWorld: a
    colour or shape word that exactly one object of the scene has), its attention on the visual tokens,
    ``p_v = Σ_{l,h} a[j, v] / Σ_{v'} Σ_{l,h} a[j, v']`` averaged over the span's tokens, and the share of
    ``p`` inside that object's box (:func:`saliency_r1.scoring.score_grid`: exact cell overlaps), against
    chance (the same share for a uniform ``p``: the box's area share) and against every other object's box.
    Reported: mean share, mean chance, mean ratio share / chance, and the % of cases where the own box
    holds more of ``p`` than every other object's box (cases with another object only).
(b) **entropy.** ``H(p) / log V`` per thinking token (1 = uniform over the V visual tokens), and the total
    variation between the focused and the distracted trace's mean thinking-token ``p`` of one scene.
(c) **focus gap by variant.** :func:`saliency_r1.evaluation.focus.focus_gap` (the reward itself) for each
    variant, with the % of traces whose map is all zero (the reward is then 0 whatever the reasoning).
(d) **decomposition.** Energy-PG in the evidence boxes, focused vs distracted
    (:func:`~saliency_r1.evaluation.focus.paired_stats`), of the full holistic map, of the rollout
    attention alone (``attn``: Σ Â, no value x logit factor) and of the value x logit factor alone (Σ s with
    the attention replaced by ones, ReLU per answer token). The last depends on the reasoning only through
    σ_i: the visual tokens precede the response and the answer token is the same.
(e) **by layer.** The holistic map before its ReLU is a sum over decoder layers; per layer, its mass (in
    logit units, summed over answer tokens) on the evidence boxes, on the other objects' boxes and on the
    rest of the image, mean over the focused and over the distracted traces: which layers carry the
    evidence, and which push against it.

Approximate: the heads and layers are pooled by summing their attention before normalising over V (a
layer that attends more to the image counts more); a multi-token word is one case with its tokens' mean.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..grammar import end_of_turn_id
from ..scoring import score_grid
from ..scoring.metrics import cell_coverage
from .focus import focus_gap, paired_stats, paired_traces

MIN_PRECISION = 1e-12


@dataclass
class Trace:
    """One response to teacher-force and probe.

    ``objects``: pixel xyxy box of every object of the scene; ``mentions``: ``(token span, object index)``
    pairs, the span ``[start, end)`` indexing the response ids (the tokenised response, as
    :func:`saliency_r1.attribution.inputs.response_ids` makes it) and lying inside the thinking span.
    """

    image: Any
    question: str
    response: str
    evidence: list
    objects: list = field(default_factory=list)
    mentions: list = field(default_factory=list)


@dataclass
class Probe:
    """What one traced response gives the diagnostic (flat maps over its V visual tokens)."""

    grid: tuple[int, int]
    image_size: tuple[int, int]
    think_attn: np.ndarray        # (J, V) normalised over V
    maps: dict[str, np.ndarray]   # holistic, think, answer, attn, value_logit: (V,)
    cases: list[tuple[float, float, float]]  # (own share, chance, best other share or nan)
    layers: np.ndarray | None = None         # (L, V) pre-ReLU holistic map of each decoder layer


@dataclass
class PreconditionResult:
    """The diagnostic's data (module docstring); :func:`precondition_markdown` makes the table."""

    own: np.ndarray           # (C,) share of a naming span's visual attention inside its object's box
    chance: np.ndarray        # (C,) the same share for uniform attention (box area share)
    best_other: np.ndarray    # (C,) largest share inside another object's box (nan: no other object)
    entropy: np.ndarray       # (J_total,) normalised entropy of each thinking token's visual attention
    attention_tv: np.ndarray  # (P,) total variation, focused vs distracted mean thinking attention
    focus: dict[str, dict[str, float]]          # variant -> focus_gap(...) + "all_zero"
    decomposition: dict[str, dict[str, float]]  # full / rollout attention / value x logit -> paired_stats
    n_pairs: int = 0
    meta: dict = field(default_factory=dict)
    layer_mass: dict = field(default_factory=dict)  # "focused" / "distracted" -> (L, 3) lists, mean over pairs


def _normalise_rows(a: torch.Tensor) -> np.ndarray:
    a = a.double().clamp_min(0)
    return (a / a.sum(-1, keepdim=True).clamp_min(MIN_PRECISION)).numpy()


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """``H(p) / log V`` of each row of ``p`` ``(..., V)`` (rows sum to 1); 1 for a uniform row, 0 for one-hot.

    >>> normalised_entropy(np.array([[0.25] * 4, [1.0, 0, 0, 0]])).round(6).tolist()
    [1.0, 0.0]
    """
    if p.shape[-1] < 2:
        raise InputError("the entropy over visual tokens needs at least 2 visual tokens")
    logs = np.log(np.where(p > 0, p, 1.0))
    return 0.0 - (p * logs).sum(-1) / np.log(p.shape[-1])


def object_cases(p: np.ndarray, grid: tuple[int, int], image_size: tuple[int, int], objects: list,
                 mentions: list) -> list[tuple[float, float, float]]:
    """``(own share, chance, best other share)`` per mention, from ``p`` ``(J, V)`` (rows: the thinking
    tokens, indexed from the thinking span's start) laid on ``grid``; see the module docstring (a).

    >>> p = np.full((2, 4), 0.25)
    >>> object_cases(p, (2, 2), (56, 56), [[0, 0, 28, 28], [28, 28, 56, 56]], [((0, 1), 0)])
    [(0.25, 0.25, 0.25)]
    """
    h, w = grid
    ones = np.ones((h, w))
    out = []
    for (lo, hi), k in mentions:
        m = p[lo:hi].mean(0).reshape(h, w)  # (h, w)
        own = score_grid(m, image_size, objects[k])
        others = [score_grid(m, image_size, b) for i, b in enumerate(objects) if i != k]
        out.append((own, score_grid(ones, image_size, objects[k]), max(others) if others else float("nan")))
    return out


def region_weights(grid: tuple[int, int], image_size: tuple[int, int], boxes: list) -> np.ndarray:
    """``(V,)`` share of each merged cell's area inside the union of ``boxes`` (exact overlaps,
    :func:`saliency_r1.scoring.metrics.cell_coverage` flattened).

    >>> region_weights((1, 2), (56, 28), [[0, 0, 14, 28]]).tolist()
    [0.5, 0.0]
    """
    return cell_coverage(grid, image_size, boxes).ravel()


def layer_mass(pr: Probe, t: Trace) -> np.ndarray:
    """``(L, 3)`` mass of ``pr``'s per-layer pre-ReLU maps on ``t``'s evidence, its other objects, the rest."""
    ev = region_weights(pr.grid, pr.image_size, t.evidence)
    objs = np.maximum(region_weights(pr.grid, pr.image_size, t.objects), ev)
    return pr.layers @ np.stack([ev, objs - ev, 1.0 - objs], 1)


def probe(model, t: Trace) -> Probe:
    """Teacher-force ``t`` through ``model`` (a :class:`~saliency_r1.SaliencyModel`) with the one tracer entry
    (:func:`saliency_r1.attribution.maps.trace_batch`, a batch of one) and read what the diagnostic needs."""
    from ..attribution.batch import build_batch
    from ..attribution.inputs import open_image, prompt_inputs, response_ids
    from ..attribution.maps import trace_batch

    image = open_image(t.image, min_side=model.patch_pixels)
    prompt = prompt_inputs(model.processor, [image], t.question)
    ids = response_ids(model.processor, t.response, end_of_turn_id(model.processor.tokenizer))
    spans = model.spans(ids)
    if not spans.complete:
        raise InputError(f"cannot probe {t.response[:60]!r}: {spans.reason}; pass <think>...</think>answer")
    batch = build_batch([prompt], [ids], [spans], model.processor.tokenizer.pad_token_id or 0, model.merge_size)
    ex = trace_batch(model.model, model.spec, batch)[0]  # a batch of one, as SaliencyModel.explain
    grid = ex.grids[0]
    p = _normalise_rows(ex.think_attn)  # (J, V)
    rel = [((a - spans.think[0], b - spans.think[0]), k) for (a, b), k in t.mentions]
    if any(a < 0 or b > len(p) or a >= b for (a, b), _ in rel):
        raise InputError("a mention's token span lies outside the thinking span; pass spans inside <think>...</think>")
    maps = {k: getattr(ex, k).double().numpy() for k in ("holistic", "think", "answer", "attn", "value_logit")}
    layers = None if ex.holistic_layers is None else ex.holistic_layers.double().numpy()
    return Probe(grid, image.size, p, maps, object_cases(p, grid, image.size, t.objects, rel), layers)


def _energy(pr: Probe, boxes: list, key: str) -> float:
    return score_grid(pr.maps[key].reshape(pr.grid), pr.image_size, boxes)


DECOMPOSITION = (("holistic", "full holistic map"), ("attn", "rollout attention alone"),
                 ("value_logit", "value x logit factor alone"))


def diagnose(model, pairs: list[tuple[Trace, Trace]], variants: tuple[str, ...] | None = None,
             meta: dict | None = None) -> PreconditionResult:
    """The diagnostic (module docstring) on ``(focused, distracted)`` trace pairs of the same scenes.

    >>> import tempfile
    >>> from saliency_r1 import load_model, tiny_checkpoint
    >>> from PIL import Image
    >>> m = load_model(tiny_checkpoint(tempfile.mkdtemp() + "/t"))
    >>> t = Trace(Image.new("RGB", (56, 56)), "What colour?", "<think>it is red</think>red", [[0, 0, 28, 56]],
    ...           [[0, 0, 28, 56], [28, 0, 56, 56]], [((2, 3), 0)])
    >>> r = diagnose(m, [(t, t)], variants=("full",))
    >>> len(r.own), bool(0 <= r.own[0] <= 1), r.decomposition["holistic"]["gap"]  # one span in each trace
    (2, True, 0.0)
    """
    from ..attribution.maps import VARIANTS

    if not pairs:
        raise InputError("no focused/distracted pairs to diagnose; pass at least one")
    probes = [(probe(model, f), probe(model, d)) for f, d in pairs]
    flat = [pr for two in probes for pr in two]
    cases = np.array([c for pr in flat for c in pr.cases], dtype=float).reshape(-1, 3)
    as_samples = [({"image": f.image, "question": f.question, "boxes": f.evidence}, f.response, d.response)
                  for f, d in pairs]
    key = {"full": "holistic"}
    focus = {}
    for v in variants or VARIANTS:
        focus[v] = focus_gap(model, as_samples, variant=v)
        focus[v]["all_zero"] = float(np.mean([not (pr.maps[key.get(v, v)] > 0).any() for pr in flat]))
    decomposition = {k: paired_stats([_energy(f, t.evidence, k) for (f, _), (t, _) in zip(probes, pairs)],
                                     [_energy(d, t.evidence, k) for (_, d), (t, _) in zip(probes, pairs)])
                     for k, _ in DECOMPOSITION}
    tv = [0.5 * np.abs(f.think_attn.mean(0) - d.think_attn.mean(0)).sum() for f, d in probes]
    by_layer = {}
    if all(f.layers is not None and d.layers is not None for f, d in probes):
        by_layer = {k: np.mean([layer_mass(pr[i], t[i]) for pr, t in zip(probes, pairs)], 0).tolist()
                    for i, k in enumerate(("focused", "distracted"))}
    return PreconditionResult(own=cases[:, 0], chance=cases[:, 1], best_other=cases[:, 2],
                              entropy=np.concatenate([normalised_entropy(pr.think_attn) for pr in flat]),
                              attention_tv=np.asarray(tv), focus=focus, decomposition=decomposition,
                              n_pairs=len(pairs), meta=dict(meta or {}), layer_mass=by_layer)


def shapes_mentions(tokenizer, response: str, objects: list[dict]) -> list[tuple[tuple[int, int], int]]:
    """``(token span, object index)`` of each colour or shape word in the thinking text of ``response`` that
    exactly one of ``objects`` (``{"shape", "colour", "box"}``, :func:`saliency_r1.data.scene_objects`) has.
    Spans index the response ids as :func:`saliency_r1.attribution.inputs.response_ids` makes them.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> tok = build_tiny()[1].tokenizer
    >>> objs = [{"shape": "square", "colour": "red"}, {"shape": "square", "colour": "blue"}]
    >>> [k for _, k in shapes_mentions(tok, "<think>The red square is blue.</think>red", objs)]
    [0, 1]
    """
    from ..grammar import char_offsets

    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    off = char_offsets(tokenizer, ids)
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    lo, hi = text.find("<think>"), text.find("</think>")
    if lo < 0 or hi < lo:
        return []
    words: dict[str, list[int]] = {}
    for i, o in enumerate(objects):
        for w in (o["colour"], o["shape"]):
            words.setdefault(w, []).append(i)
    out = []
    for w, owners in words.items():
        if len(owners) != 1:
            continue
        for m in re.finditer(rf"\b{re.escape(w)}\b", text[lo + len("<think>"):hi]):
            a, b = m.start() + lo + len("<think>"), m.end() + lo + len("<think>")
            toks = [k for k in range(len(ids)) if off[k] < b and off[k + 1] > a]
            if toks:
                out.append(((toks[0], toks[-1] + 1), owners[0]))
    return sorted(out)


def shapes_pairs(tokenizer, config, n: int, seed: int = 0, split: str = "validation") -> list[tuple[Trace, Trace]]:
    """Focused / distracted :class:`Trace` pairs of ``n`` ShapesWorld scenes
    (:func:`~saliency_r1.evaluation.focus.paired_traces`) with every object and every naming word."""
    from ..data import ShapesWorldConfig, scene_objects

    cfg = config if config is not None else ShapesWorldConfig()
    out = []
    for sample, f, d in paired_traces(cfg, n, seed=seed, split=split):
        objs = scene_objects(dataclasses.replace(cfg, distracted_frac=0.0), sample)
        boxes = [o["box"] for o in objs]
        out.append(tuple(Trace(sample["image"], sample["question"], r, sample["boxes"], boxes,
                               shapes_mentions(tokenizer, r, objs)) for r in (f, d)))
    return out


def shapes_precondition(model, config=None, n: int = 100, seed: int = 0, split: str = "validation",
                        variants: tuple[str, ...] | None = None) -> PreconditionResult:
    """:func:`diagnose` on ``n`` ShapesWorld scenes of ``config`` (``split`` never the held-out one)."""
    pairs = shapes_pairs(model.processor.tokenizer, config, n, seed=seed, split=split)
    return diagnose(model, pairs, variants, meta={"n": n, "seed": seed, "split": split, "model": model.name})


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def precondition_markdown(r: PreconditionResult) -> str:
    """One Markdown table of the diagnostic: measure | figure | reference (chance, uniform or the gate).

    >>> r = PreconditionResult(np.array([.5]), np.array([.25]), np.array([.1]), np.ones(3), np.zeros(1),
    ...     {"full": {"n": 1, "focused": .3, "distracted": .2, "gap": .1, "gap_se": 0., "focused_wins": 1.,
    ...               "all_zero": 0.}}, {"holistic": {"n": 1, "focused": .3, "distracted": .2, "gap": .1,
    ...               "gap_se": 0., "focused_wins": 1.}}, 1)
    >>> print(precondition_markdown(r).splitlines()[2])
    | (a) naming spans: attention share in the named object's box | 50.0 % ± 0.0 (1 spans) | chance 25.0 % |
    """
    has_other = ~np.isnan(r.best_other)
    wins = float(np.mean(r.own[has_other] > r.best_other[has_other])) if has_other.any() else float("nan")
    ratio = r.own / np.maximum(r.chance, MIN_PRECISION)
    rows = ["| measure | figure | reference |", "|---|---|---|",
            f"| (a) naming spans: attention share in the named object's box | {_pct(r.own.mean())} ± "
            f"{100 * _se(r.own):.1f} ({len(r.own)} spans) | chance {_pct(r.chance.mean())} |",
            f"| (a) share / chance | {ratio.mean():.2f} ± {_se(ratio):.2f} | 1 = chance; gate >= 3 |",
            f"| (a) named box > every other object's box | {_pct(wins)} of {int(has_other.sum())} | gate >= 80 % |",
            f"| (b) normalised entropy of thinking-token attention over visual tokens | {r.entropy.mean():.3f} "
            f"({len(r.entropy)} tokens) | 1 = uniform |",
            f"| (b) total variation, focused vs distracted thinking attention | {r.attention_tv.mean():.3f} | "
            "0 = identical |"]
    for v, s in r.focus.items():
        rows.append(f"| (c) R_saliency `{v}`: focused − distracted (pts), wins, all-zero maps | "
                    f"{100 * s['gap']:+.1f} ± {100 * s['gap_se']:.1f}, {_pct(s['focused_wins'])}, "
                    f"{_pct(s['all_zero'])} | gate: >= 3 s.e., >= 70 %, <= 5 % |")
    for k, label in DECOMPOSITION:
        s = r.decomposition.get(k)
        if s is not None:
            rows.append(f"| (d) {label}: energy-PG focused / distracted, gap (pts), wins | "
                        f"{_pct(s['focused'])} / {_pct(s['distracted'])}, {100 * s['gap']:+.1f} ± "
                        f"{100 * s['gap_se']:.1f}, {_pct(s['focused_wins'])} | |")
    if r.layer_mass:
        for layer, (f, d) in enumerate(zip(r.layer_mass["focused"], r.layer_mass["distracted"])):
            f, d = 1000 * np.asarray(f), 1000 * np.asarray(d)
            rows.append(f"| (e) layer {layer}: pre-ReLU holistic mass on evidence / other objects / rest, focused "
                        f"-> distracted | {f[0]:+.2f} / {f[1]:+.2f} / {f[2]:+.2f} -> {d[0]:+.2f} / {d[1]:+.2f} / "
                        f"{d[2]:+.2f} | 10^-3 logit |")
    return "\n".join(rows)


GATES = {"ratio": 3.0, "own_beats_others": 0.80, "wins": 0.70, "gap_in_se": 3.0, "all_zero": 0.05}
"""Issue 13's gates on the cold start: object-specific attention >= 3x chance and on the named box more than
on any other in >= 80 % of cases; the paper's reward (``full``): focused wins >= 70 %, gap >= 3 s.e.,
all-zero maps <= 5 %."""


def precondition_verdict(r: PreconditionResult) -> dict:
    """Whether the precondition holds on ``r``'s model (:data:`GATES`): ``{"holds", "checks", "text"}``.

    >>> r = PreconditionResult(np.array([.5, .5]), np.array([.25, .25]), np.array([.1, .6]), np.ones(3),
    ...     np.zeros(1), {"full": {"n": 2, "focused": .3, "distracted": .2, "gap": .1, "gap_se": .01,
    ...                            "focused_wins": 1., "all_zero": 0.}}, {}, 2)
    >>> v = precondition_verdict(r)
    >>> v["holds"], [k for k, ok in v["checks"].items() if not ok]
    (False, ['attention share >= 3x chance', 'named box > every other box in >= 80 %'])
    """
    has_other = ~np.isnan(r.best_other)
    ratio = float(np.mean(r.own / np.maximum(r.chance, MIN_PRECISION))) if len(r.own) else 0.0
    beats = float(np.mean(r.own[has_other] > r.best_other[has_other])) if has_other.any() else 0.0
    f = r.focus.get("full")
    checks = {"attention share >= 3x chance": ratio >= GATES["ratio"],
              "named box > every other box in >= 80 %": beats >= GATES["own_beats_others"]}
    if f is not None:
        checks["focused wins >= 70 %"] = f["focused_wins"] >= GATES["wins"]
        checks["gap >= 3 s.e."] = f["gap"] >= GATES["gap_in_se"] * f["gap_se"] and f["gap"] > 0
        checks["all-zero maps <= 5 %"] = f["all_zero"] <= GATES["all_zero"]
    holds = all(checks.values())
    failed = [k for k, ok in checks.items() if not ok]
    looks = checks["attention share >= 3x chance"] and checks["named box > every other box in >= 80 %"]
    seen = (f"thinking tokens that name an object put {ratio:.2f}x chance on its box, and more on it than on every "
            f"other box in {100 * beats:.0f} % of cases")
    if holds:
        text = f"The reward can see the reasoning on this model: every gate passes ({seen})."
    elif looks:
        text = (f"Thinking tokens look at what they name here ({seen}), but the reward does not turn that into a "
                f"preference for focused reasoning: {', '.join(failed)} failed. GRPO with this reward then has "
                "little signal to make the reasoning focused, so the demo cannot test the paper's claim either way.")
    else:
        text = (f"The reward cannot see the reasoning on this model: {', '.join(failed)} failed ({seen}). GRPO with "
                "the saliency reward then has no signal to make the reasoning focused, so the demo cannot test the "
                "paper's claim either way.")
    return {"holds": holds, "checks": checks, "text": text}


def to_dict(r: PreconditionResult) -> dict:
    """A JSON-ready dict of ``r`` (arrays as lists).

    >>> to_dict(PreconditionResult(np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1), np.zeros(1), {}, {}))["own"]
    [0.0]
    """
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dataclasses.asdict(r).items()}


def from_dict(d: dict) -> PreconditionResult:
    """The inverse of :func:`to_dict`.

    >>> r = PreconditionResult(np.zeros(1), np.zeros(1), np.zeros(1), np.ones(2), np.zeros(1), {}, {}, 3)
    >>> from_dict(to_dict(r)).n_pairs, from_dict(to_dict(r)).entropy.shape
    (3, (2,))
    """
    arrays = ("own", "chance", "best_other", "entropy", "attention_tv")
    return PreconditionResult(**{k: (np.asarray(v, dtype=float) if k in arrays else v) for k, v in d.items()})


__all__ = ["Trace", "Probe", "PreconditionResult", "normalised_entropy", "object_cases", "probe", "diagnose",
           "shapes_mentions", "shapes_pairs", "region_weights", "layer_mass", "shapes_precondition", "precondition_markdown", "to_dict",
           "from_dict", "DECOMPOSITION", "GATES", "precondition_verdict"]
