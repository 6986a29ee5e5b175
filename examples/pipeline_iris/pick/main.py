"""Pick the most accurate model; ties go to the one listed first."""


def apply(evaluation):
    ranking = sorted(evaluation["scores"], key=lambda score: -score["accuracy"])
    best = ranking[0]
    return {"best": best["name"], "accuracy": best["accuracy"], "ranking": ranking}
