def apply(input):
    if isinstance(input, int) and input % 100 == 7:
        raise ValueError(f"{input} ends in 07")
    return {"double": input * 2}
