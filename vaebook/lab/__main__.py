"""Run one experiment from the command line (no notebook), e.g. on a GPU machine::

    python -m vaebook.lab run smoothness --preset cpu --device cpu -p tables='["table1"]'
    python -m vaebook.lab list

``-p name=value`` sets any parameter of the experiment (the value is read as JSON, else as a string).
Results go to ``<results_dir>/<preset>/<experiment>/``; trained models and per-unit evaluations are cached, so
an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _value(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def main(argv=None) -> int:
    from vaebook.lab.experiment import run
    from vaebook.lab.page import experiments, get_experiment
    from vaebook.lab.params import ParameterError

    ap = argparse.ArgumentParser(prog="python -m vaebook.lab", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the experiments and their presets")
    r = sub.add_parser("run", help="run one experiment in compute mode")
    r.add_argument("experiment")
    r.add_argument("--preset", default="smoke")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--results-dir", default="results")
    r.add_argument("--data-root", default=None)
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    a = ap.parse_args(argv)
    if a.cmd == "list":
        for name, exp in experiments().items():
            print(f"{name}: presets {', '.join(exp.presets)}; parameters {', '.join(sorted(exp.params))}")
        return 0
    params = {"preset": a.preset, "device": a.device, "seed": a.seed, "results_dir": a.results_dir,
              "data_root": a.data_root, "mode": "compute"}
    for kv in a.param:
        if "=" not in kv:
            ap.error(f"-p {kv!r}: expected NAME=VALUE")
        k, v = kv.split("=", 1)
        params[k.strip()] = _value(v)
    t0 = time.perf_counter()
    try:
        out = run(get_experiment(a.experiment), params, log=lambda s: print(s, flush=True))
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[vaebook.lab] {a.experiment} done in {time.perf_counter() - t0:.0f} s: {out.final_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
