import os


def apply(input):
    os._exit(3)
