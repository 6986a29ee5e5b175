"""What a hostile or careless algorithm does to its container, one mode per input."""
import os
import sys
import time


def apply(input):
    return MODES[input["do"]](input)


def chatty(input):  # megabytes of output, far more than /tmp could hold
    line = "z" * 1023 + "\n"
    for _ in range(input["mb"] * 1024):
        sys.stdout.write(line)
    print("the last line")
    return "printed"


def fill_tmp(input):  # until the tmpfs is full, then log and succeed
    with open("/tmp/filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            print(f"/tmp is full: {exc.strerror}")
    print("still logging")
    return "filled"


def fork_bomb(input):  # children that sleep on, until the pid limit stops the forking
    forked = 0
    try:
        while forked < 1000:
            if os.fork() == 0:
                time.sleep(3600)
                os._exit(0)
            forked += 1
    except OSError:
        pass
    return {"forked": forked}


def forge(input):  # a line that is no protocol message, on every descriptor it can reach
    line = b"not a frame, and a secret: " + input["secret"].encode() + b"\n"
    for fd in range(3, 64):
        try:
            os.write(fd, line)
        except OSError:
            pass
    time.sleep(5)
    return "forged"


def allocate(input):  # memory the cgroup sees, whatever the runner would have said
    block = bytearray(input["mb"] << 20)
    block[::4096] = b"\x01" * len(block[::4096])
    return len(block)


def deep(input):
    value = 1
    for _ in range(input["levels"]):
        value = [value]
    return value


MODES = {"chatty": chatty, "fill_tmp": fill_tmp, "fork_bomb": fork_bomb, "forge": forge,
         "allocate": allocate, "deep": deep}
