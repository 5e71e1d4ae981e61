"""lmms-eval hooks of the example local task ``saliency_local`` (rows: image, question, answer)."""


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def process_results(doc, results):
    """Exact match, trimmed and lower-cased, of the text after the last ``</think>`` (``<answer>`` tags
    removed): the answer as the project's rewards read it."""
    text = results[0].rsplit("</think>", 1)[-1].replace("<answer>", "").replace("</answer>", "")
    return {"exact_match": float(text.strip().lower() == doc["answer"].strip().lower())}
