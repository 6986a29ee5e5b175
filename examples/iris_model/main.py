"""Classify iris flowers with a model attached to the build, loaded once per container."""

import pickle

MODEL_PATH = "/models/classifier"
model = None


def load():
    # Called once when the container starts; every call after that reuses the model.
    global model
    with open(MODEL_PATH, "rb") as f:
        model = pickle.load(f)


def apply(input):
    """`{"features": [[sepal_len, sepal_wid, petal_len, petal_wid], ...]}` -> species."""
    rows = input["features"] if isinstance(input, dict) else input
    predicted = model["classifier"].predict(rows)
    return {"species": [model["species"][int(i)] for i in predicted]}
