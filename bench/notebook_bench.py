"""A notebook algorithm called warm, against the same code as a function algorithm and
against a cold papermill run of the same notebook (a kernel per run), in one run.

    python -m bench.notebook_bench [--calls 30] [--cold 3] [--api-url URL --key KEY]

Needs the local stack (`algohost dev up`), or an API named with --api-url and --key. The
notebook takes parameters, computes, and draws a matplotlib plot; so does the function,
which saves its plot under /outputs as the notebook's becomes an artifact. Goal: the warm
notebook's p50 at most 250 ms, plot included.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from algohost.config import load_settings
from algohost.store import connect
from algohost.store.keys import KeyStore
from bench.algohost_bench import Client
from bench.stats import summary

OWNER = "bench"
GOAL_MS = 250.0
PACKAGES = '["numpy==2.4.*", "matplotlib==3.11.2"]'
IMPORTS = "import numpy as np\nimport matplotlib.pyplot as plt"
PARAMETERS = "n = 200  # points\nseed = 0  # random seed"
COMPUTE = """rng = np.random.default_rng(seed)
x = rng.uniform(0, 10, n)
y = 3.0 * x + 2.0 + rng.normal(0, 1.0, n)
a, b = np.polyfit(x, y, 1)"""
PLOT = """fig, ax = plt.subplots(figsize=(5, 3.5))
ax.scatter(x, y, s=8)
ax.plot([0, 10], [b, 10 * a + b], color="C3")"""
RESULT = 'result = {"slope": float(a), "intercept": float(b)}'


def notebook() -> Any:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    parameters = new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [new_code_cell(IMPORTS), parameters, new_code_cell(COMPUTE),
                new_code_cell(PLOT + "\nplt.show()"), new_code_cell(RESULT)]
    return nb


def function_source() -> str:
    """The same cells as one function: the plot saved where a notebook's image goes."""
    body = "\n".join([PARAMETERS.replace("n = 200", "n = input.get('n', 200)")
                      .replace("seed = 0", "seed = input.get('seed', 0)"), COMPUTE, PLOT,
                      'fig.savefig(ah.output_path("plot.png"), format="png", '
                      'bbox_inches="tight")', "plt.close(fig)", RESULT, "return result"])
    return (f"{IMPORTS}\nimport matplotlib\nimport algohost_runtime as ah\n\n"
            f"matplotlib.use('agg')\n\n\ndef apply(input):\n{textwrap.indent(body, '    ')}\n")


def write_algorithms(scratch: Path, tag: str) -> tuple[Path, Path, Path]:
    nb_dir, fn_dir = scratch / "notebook", scratch / "function"
    nb_dir.mkdir()
    fn_dir.mkdir()
    nbformat.write(notebook(), nb_dir / "bench.ipynb")
    (nb_dir / "algorithm.toml").write_text(
        f'name = "nbbench-{tag}"\nentrypoint = "bench.ipynb"\n[build]\n'
        f"python_packages = {PACKAGES}\n")
    (fn_dir / "main.py").write_text(function_source())
    (fn_dir / "algorithm.toml").write_text(
        f'name = "fnbench-{tag}"\nentrypoint = "main:apply"\n[build]\n'
        f"python_packages = {PACKAGES}\n")
    return nb_dir, fn_dir, nb_dir / "bench.ipynb"


def warm(client: Client, ref: str, calls: int) -> dict[str, Any]:
    for i in range(5):
        client.call(ref, {"seed": i})
    samples, run_ms, cold = [], [], 0
    for i in range(calls):
        started = time.perf_counter()
        job = client.call(ref, {"seed": i, "n": 200})
        samples.append(time.perf_counter() - started)
        run_ms.append(job["metrics"]["run_ms"] / 1000)
        cold += 0 if job["warm"] else 1
        assert job["artifacts"], "the plot must be kept"
    return {**summary(samples), "run_ms": summary(run_ms), "cold_calls": cold}


def papermill_cold(path: Path, runs: int) -> dict[str, Any]:
    import papermill

    samples = []
    with tempfile.TemporaryDirectory(prefix="algohost-papermill-") as out:
        for i in range(runs):
            started = time.perf_counter()
            papermill.execute_notebook(str(path), f"{out}/run{i}.ipynb",
                                       parameters={"seed": i, "n": 200}, progress_bar=False,
                                       cwd=str(path.parent), log_output=False)
            samples.append(time.perf_counter() - started)
    return summary(samples)


def run(client: Client, calls: int, cold: int, owner: str = OWNER) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="algohost-nbbench-") as tmp:
        nb_dir, fn_dir, path = write_algorithms(Path(tmp), uuid.uuid4().hex[:6])
        print("publishing the notebook and the function (numpy, matplotlib) ...")
        nb_ref = client.publish(nb_dir, owner)["ref"]
        fn_ref = client.publish(fn_dir, owner)["ref"]
        results = {"notebook_warm": warm(client, nb_ref, calls),
                   "function_warm": warm(client, fn_ref, calls),
                   "papermill_cold": papermill_cold(path, cold)}
    notebook_ms = results["notebook_warm"]["p50_ms"]
    results["ratio_notebook_vs_function"] = round(
        notebook_ms / results["function_warm"]["p50_ms"], 2)
    results["ratio_papermill_vs_notebook"] = round(
        results["papermill_cold"]["p50_ms"] / notebook_ms, 2)
    results["goal_ms"] = GOAL_MS
    results["below_goal_ms"] = round(GOAL_MS - notebook_ms, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--key", default=None)
    parser.add_argument("--owner", default=OWNER, help="the owner --key belongs to")
    args = parser.parse_args()
    settings = load_settings()
    if args.api_url:
        settings = settings.with_overrides(api_url=args.api_url)
    key = args.key or KeyStore(connect(settings)).create(OWNER)
    results = run(Client(settings, key), args.calls, args.cold, args.owner)
    for name in ("notebook_warm", "function_warm", "papermill_cold"):
        figures = results[name]
        print(f"{name:<16} p50 {figures['p50_ms']:>9.1f} ms   p99 {figures['p99_ms']:>9.1f} ms"
              f"   n={figures['n']}")
    print(f"warm notebook / warm function p50: {results['ratio_notebook_vs_function']}x")
    print(f"cold papermill / warm notebook p50: {results['ratio_papermill_vs_notebook']}x")
    verdict = "met" if results["below_goal_ms"] >= 0 else "NOT met"
    print(f"goal: warm notebook p50 <= {GOAL_MS:g} ms: {verdict} "
          f"({abs(results['below_goal_ms'])} ms {'below' if verdict == 'met' else 'above'})")


if __name__ == "__main__":
    main()
