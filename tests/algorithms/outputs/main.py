import os


def apply(input):
    before = sorted(os.listdir("/outputs"))
    for name, text in (input.get("files") or {}).items():
        path = os.path.join("/outputs", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    for i in range(input.get("many", 0)):
        with open(f"/outputs/f{i}.txt", "w") as f:
            f.write("x")
    return {"before": before}
