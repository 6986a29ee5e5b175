"""Score trained classifiers on held-out rows: accuracy of each, in the order given."""

from collections import Counter


def _distance(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def _predict(trained, features):
    model = trained["model"]
    if trained["kind"] == "centroid":
        return min(model["centroids"], key=lambda label: _distance(model["centroids"][label],
                                                                   features))
    nearest = sorted(model["rows"], key=lambda row: _distance(row[:4], features))[:model["k"]]
    return Counter(row[4] for row in nearest).most_common(1)[0][0]


def apply(params):
    rows = params["rows"]
    scores = []
    for trained in params["models"]:
        right = sum(_predict(trained, row[:4]) == row[4] for row in rows)
        scores.append({"name": trained["name"], "accuracy": round(right / len(rows), 4)})
    return {"scores": scores, "tested_on": len(rows)}
