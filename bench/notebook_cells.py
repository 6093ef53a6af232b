"""How soon the notebook shows something: executes it headless (nbclient) in a folder, cell by
cell, and prints when each cell ended, counted from the kernel's start, and when the first output
appeared. Services it started are stopped at the end.

    python bench/notebook_cells.py [NOTEBOOK] --cwd notebooks --last 5 --param AUTO_RUN=False
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from notebook_run import NOTEBOOK, stop_leftover_services, with_parameters  # noqa: E402


def main() -> None:
    import nbclient
    import nbformat

    parser = argparse.ArgumentParser()
    parser.add_argument("notebook", nargs="?", default=str(NOTEBOOK))
    parser.add_argument("--cwd", default=str(NOTEBOOK.parent))
    parser.add_argument("--last", type=int, default=None, help="stop after this code cell (0-based)")
    parser.add_argument("--param", action="append", default=[], help="NAME=python literal")
    parser.add_argument("--state", default="", help="stop the services left in this state folder")
    args = parser.parse_args()
    params = {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in args.param)}
    nb = nbformat.read(args.notebook, as_version=4)
    nb = with_parameters(nb, **params) if params else nb
    client = nbclient.NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": args.cwd}})
    start = time.perf_counter()
    first_output = None
    try:
        with client.setup_kernel():
            print(f"kernel started: {time.perf_counter() - start:6.2f} s")
            code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
            for n, index in enumerate(code):
                if args.last is not None and n > args.last:
                    break
                client.execute_cell(nb.cells[index], index)
                now = time.perf_counter() - start
                if first_output is None and nb.cells[index].outputs:
                    first_output = now
                line = nb.cells[index].source.splitlines()[0][:60]
                print(f"code cell {n} ended: {now:6.2f} s  ({line})")
    finally:
        if args.state:
            stop_leftover_services(Path(args.state))
    print(f"first output: {first_output:.2f} s" if first_output is not None else "first output: none")


if __name__ == "__main__":
    main()
