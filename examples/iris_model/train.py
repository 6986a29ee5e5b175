"""Train the iris classifier on the data set scikit-learn ships (nothing is downloaded).

    python train.py OUT_DIR     # writes OUT_DIR/iris.pkl; `make demo` pushes it as `iris`
"""

import pickle
import sys
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def train(out_dir: Path) -> Path:
    data = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "iris.pkl"
    with open(path, "wb") as f:
        pickle.dump({"classifier": classifier, "species": list(data.target_names)}, f)
    return path


if __name__ == "__main__":
    print(train(Path(sys.argv[1])))
