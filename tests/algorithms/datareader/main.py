import algohost_runtime as ah


def apply(input):
    try:
        with ah.open(input["uri"]) as f:
            text = f.read()
    except (PermissionError, FileNotFoundError) as exc:
        return {"refused": type(exc).__name__, "message": str(exc)}
    with open(ah.output_path("copies/upper.txt"), "w") as out:
        out.write(text.upper())
    return {"text": text}
