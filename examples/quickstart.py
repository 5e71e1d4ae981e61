"""The README quickstart, runnable: explain one answer of the tiny model and write a report."""

import saliency_r1

model = saliency_r1.load_model(saliency_r1.tiny_checkpoint("runs/tiny"))
res = model.explain("docs/example.png", "What color is the square?", response="<think>The square is at the top. It is green.</think>green")
print(res.score(boxes=[[66, 14, 111, 59]]))

if __name__ == "__main__":
    from saliency_r1.viz import report_html

    print("report:", report_html(res, "runs/quickstart/report.html", boxes=[[66, 14, 111, 59]],
                                 scores=res.score(boxes=[[66, 14, 111, 59]])))
