import os
import sys


def apply(input):
    print(f"print to stdout {input}")
    print(f"print to stderr {input}", file=sys.stderr)
    os.write(1, f"raw write to fd 1 {input}\n".encode())
    os.write(2, f"raw write to fd 2 {input}\n".encode())
    return {"printed": input}
