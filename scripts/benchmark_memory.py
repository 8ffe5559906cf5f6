#!/usr/bin/env python
"""Peak resident memory and wall time of CSC runs (scripts/run_csc.py).

Each run is a child process; every 0.2 s the resident memory (VmRSS) of the
child and of all its descendants is read from /proc and summed, so a run
whose tasks live in worker processes is charged for all of them. The peak
of that sum, the peak of the child alone and the wall time are printed as
one table line per run, and appended to --json if given.

A run is METHODS@EXECUTOR (EXECUTOR: serial, process, ray, or 'none' to pass
no --executor, for code that predates it). --code-root runs scripts/run_csc.py
of another checkout (e.g. the code before a change).

Example (the issue's target: every method with relevance injection, VGG-16
with random weights, one photo, against DeepLIFT RevealCancel alone):
    python scripts/benchmark_memory.py --network vgg16 --images-npy photo.npy \\
        --patterns vgg16_random.npz \\
        --run "DeepLIFT Rev.C.@serial" --run "all,extra@serial" --run "all,extra@process"
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (0 if it has ended)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def descendants(pid: int) -> list:
    """``pid`` and every process below it (from /proc/*/stat parent ids)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                text = handle.read()
            parent = int(text[text.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, ()))
    return found


def measure(command, *, env=None, interval: float = 0.2, log=None) -> dict:
    """Run ``command``; peak summed RSS of its process tree, peak RSS of the
    process itself (bytes), wall time (s) and exit code."""
    started = time.time()
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak_tree = peak_main = 0
    while proc.poll() is None:
        tree = sum(rss_bytes(p) for p in descendants(proc.pid))
        peak_tree = max(peak_tree, tree)
        peak_main = max(peak_main, rss_bytes(proc.pid))
        time.sleep(interval)
    return {"peak_tree_bytes": peak_tree, "peak_main_bytes": peak_main,
            "wall_s": time.time() - started, "returncode": proc.returncode}


def run_command(args, methods: str, executor: str, out: Path) -> list:
    code = Path(args.code_root) if args.code_root else ROOT
    command = [sys.executable, str(code / "scripts" / "run_csc.py"), "--network", args.network,
               "--weights", args.weights, "--methods", methods, "--n-images", str(args.n_images),
               "--n-vectors", str(args.n_vectors), "--seed", str(args.seed), "--out", str(out)]
    if args.images_npy:
        command += ["--images-npy", args.images_npy]
    if args.patterns:
        command += ["--patterns", args.patterns]
    if executor != "none":
        command += ["--executor", executor, "--no-progress"]
    return command


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="cifar-net")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--n-images", type=int, default=1)
    parser.add_argument("--n-vectors", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images-npy", default=None)
    parser.add_argument("--patterns", default=None)
    parser.add_argument("--code-root", default=None,
                        help="checkout whose scripts/run_csc.py runs (default: this one)")
    parser.add_argument("--run", action="append", required=True, metavar="METHODS@EXECUTOR")
    parser.add_argument("--json", default=None, help="append the results to this JSON-lines file")
    parser.add_argument("--keep", default=None, help="keep the runs' output under this directory")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(Path(args.code_root) if args.code_root else ROOT))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="benchmark_memory_"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"{'methods':>28s} {'executor':>8s} {'peak RSS tree':>14s} {'peak RSS main':>14s} "
          f"{'wall':>8s}")
    status = 0
    for k, spec in enumerate(args.run):
        methods, _, executor = spec.rpartition("@")
        if not methods or executor not in ("serial", "process", "ray", "none"):
            raise SystemExit(f"--run {spec!r}: expected METHODS@EXECUTOR with EXECUTOR one of "
                             "serial, process, ray, none")
        out = base / f"run{k}"
        with open(base / f"run{k}.log", "w") as log:
            result = measure(run_command(args, methods, executor, out), env=env, log=log)
        result.update(methods=methods, executor=executor, network=args.network,
                      code_root=args.code_root or str(ROOT), log=str(base / f"run{k}.log"))
        tree, main_rss = result["peak_tree_bytes"] / 2**30, result["peak_main_bytes"] / 2**30
        failed = "" if result["returncode"] == 0 else f"  (exit {result['returncode']})"
        print(f"{methods[:28]:>28s} {executor:>8s} {tree:10.2f} GiB {main_rss:10.2f} GiB "
              f"{result['wall_s']:7.0f}s{failed}", flush=True)
        status = status or result["returncode"]
        if args.json:
            with open(args.json, "a") as handle:
                handle.write(json.dumps(result) + "\n")
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
