"""Fit a small classifier on rows of [4 features..., label], in plain Python.

`centroid`: one mean point per class; `knn`: the rows themselves and k. The model is
returned and also left under /outputs, where it becomes the call's artifact.
"""

import json
from collections import defaultdict


def _centroids(rows):
    sums, counts = defaultdict(lambda: [0.0] * 4), defaultdict(int)
    for *features, label in rows:
        counts[label] += 1
        sums[label] = [s + f for s, f in zip(sums[label], features)]
    return {label: [round(s / counts[label], 4) for s in sums[label]] for label in sums}


def apply(params):
    rows, kind = params["rows"], params.get("kind", "centroid")
    if kind == "centroid":
        model = {"centroids": _centroids(rows)}
    elif kind == "knn":
        model = {"k": int(params.get("k", 5)), "rows": rows}
    else:
        raise ValueError(f"unknown kind {kind!r}: centroid or knn")
    trained = {"name": params.get("name") or kind, "kind": kind, "model": model,
               "trained_on": len(rows)}
    with open("/outputs/model.json", "w") as handle:
        json.dump(trained, handle)
    return trained
