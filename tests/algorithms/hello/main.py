def apply(input):
    if isinstance(input, dict) and "raise" in input:
        raise ValueError(input["raise"])
    return {"hello": input}
