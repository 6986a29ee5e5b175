"""Benchmarks: each algohost figure next to a baseline measured in the same run."""
