def apply(input):
    chunks = []
    while True:  # until the container's memory limit stops it
        chunks.append(b"\x01" * (8 * 1024 * 1024))  # written, so the pages are really used
