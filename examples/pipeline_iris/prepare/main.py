"""Split Fisher's iris measurements into train and test rows, the same way for the same seed."""

import csv
import random
from pathlib import Path

SPECIES = ["setosa", "versicolor", "virginica"]


def _rows():
    with open(Path(__file__).with_name("iris.csv"), newline="") as handle:
        return [[float(x) for x in row[:4]] + [SPECIES[int(row[4])]]
                for row in csv.reader(handle) if row and row[0][0].isdigit()]


def apply(params):
    params = params or {}
    fraction = float(params.get("test_fraction") or 0.3)
    rows = _rows()
    random.Random(params.get("seed", 0)).shuffle(rows)
    cut = int(len(rows) * (1 - fraction))
    return {"train": rows[:cut], "test": rows[cut:], "classes": SPECIES,
            "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"]}
