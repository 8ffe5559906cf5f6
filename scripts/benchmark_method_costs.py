#!/usr/bin/env python
"""Each method's cost relative to Gradient: the registry's ``RelativeCost``.

For every model file given, each chosen method is built alone on a copy of
the model in a TensorFlow graph of its own (as the per-method audit does),
checked and timed on the first image (scripts/audit.py's probe), and its
peak memory read: the process's peak resident memory since the method
started (csc_analyzers.audit.cost.window_peak) minus the memory before it. The
graph is released before the next method. Per model a table of the
measured costs is printed; then, per method, the geometric mean over the
models of its cost divided by Gradient's on the same model: build (analyzer
built and first run, with the model copy), CSC unit, map and memory growth,
printed as the ``cost=RelativeCost(...)`` of csc_analyzers/registry.py.

TensorFlow's oneDNN operations are off unless TF_ENABLE_ONEDNN_OPTS is set,
as in scripts/audit.py. Linux only (/proc). Run it on an idle machine: the ratios are only as good
as the timings.

Example (the registry's numbers; models saved by keras.applications with
weights=None at 224 x 224):
    python scripts/benchmark_method_costs.py mobilenetv2.keras resnet50v2.keras \\
        --images photos/ --preprocess tf --json costs.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure_model(path: Path, images_dir: Path, preprocessing: str, specs, *,
                  n_vectors: int, seed: int) -> dict:
    """Method name -> measured cost on the model at ``path`` (each method
    alone, in a graph of its own): ``build_s``, ``csc_s``, ``map_s``,
    ``memory_gib`` (peak growth over the memory before it, at least 0), or
    ``error`` when it does not apply."""
    from csc_analyzers.audit import run as audit
    from csc_analyzers.audit.checks import check_model_io, load_model
    from csc_analyzers.audit.cost import current_rss
    from residual_support.flatten import flatten_model

    model = flatten_model(load_model(path))
    io = check_model_io(model, source=f"model {path}")
    audit.reserve_layer_names(model)
    raw, _names = audit.read_image_dir(images_dir, height=io["height"], width=io["width"],
                                       channels=io["channels"], n=1)
    image = audit.preprocess(raw, preprocessing)[0]
    network = audit.audit_network(model, path.stem, audit.input_range(preprocessing))
    source = audit.ModelSource.of(model, path, network.name, network.input_range)
    patterns = None
    if any(spec.needs_patterns for spec in specs):
        patterns, _reason = audit.estimate_audit_patterns(network.model, image[None])
    probe = {"n_vectors": n_vectors, "seed": seed, "patterns": patterns, "composites": False}
    found = {}
    for spec in specs:
        before = current_rss()
        check = audit.probe_alone(spec, source, network, image, patterns=patterns, table=None,
                                  seed=seed, probe=probe)
        if not check.ok:
            found[spec.name] = {"error": check.reason}
        else:
            cost = check.cost
            found[spec.name] = {"build_s": cost.build_s, "csc_s": cost.csc_s,
                                "map_s": cost.map_s,
                                # memory freed before the probe's window is no growth
                                "memory_gib": max(cost.rss_bytes - before, 0) / 2**30}
        row = found[spec.name]
        print(f"  {spec.name}: " + (f"not applicable: {row['error'][:80]}" if "error" in row
                                    else ", ".join(f"{key} {value:.2f}"
                                                   for key, value in row.items())),
              file=sys.stderr, flush=True)
    return found


def relative_costs(measured: dict) -> dict:
    """Method -> {part: geometric mean over models of cost / Gradient's cost}
    for the parts ``build_s``, ``csc_s``, ``map_s``, ``memory_gib``;
    models where either is missing or zero are left out of that part."""
    parts = ("build_s", "csc_s", "map_s", "memory_gib")
    names = list(dict.fromkeys(name for per_model in measured.values() for name in per_model))
    found = {}
    for name in names:
        ratios = {part: [] for part in parts}
        for per_model in measured.values():
            own, unit = per_model.get(name, {}), per_model.get("Gradient", {})
            for part in parts:
                if own.get(part) and unit.get(part):
                    ratios[part].append(own[part] / unit[part])
        found[name] = {part: (math.exp(sum(map(math.log, values)) / len(values))
                              if values else None) for part, values in ratios.items()}
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help=".keras / .h5 model files")
    parser.add_argument("--images", type=Path, required=True, metavar="DIR",
                        help="directory of images; the first is used")
    parser.add_argument("--preprocess", default="tf", help="as scripts/audit.py (default tf)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated display names (default: every installed method; "
                             "Gradient is always measured, as the unit)")
    parser.add_argument("--n-vectors", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if "tensorflow" not in sys.modules:  # a setting for the process TensorFlow starts in
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as scripts/audit.py
    from csc_analyzers.audit.data import PREPROCESSING
    from csc_analyzers.audit.run import choose_methods

    if args.preprocess not in PREPROCESSING:
        print(f"--preprocess {args.preprocess!r}: choose from {PREPROCESSING}", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.models if not path.exists()]
    if missing:
        print(f"no such model file: {', '.join(missing)}", file=sys.stderr)
        return 2
    specs = choose_methods(args.methods)
    if "Gradient" not in {spec.name for spec in specs}:
        specs = choose_methods("Gradient") + specs
    measured = {}
    for path in args.models:
        print(f"{path}:", file=sys.stderr, flush=True)
        measured[str(path)] = measure_model(path, args.images, args.preprocess, specs,
                                            n_vectors=args.n_vectors, seed=args.seed)
    relative = relative_costs(measured)
    if args.json is not None:
        args.json.write_text(json.dumps({"measured": measured, "relative": relative},
                                        indent=1))
    print("method | build | csc | map | memory  (relative to Gradient, geometric mean)")
    for name, parts in relative.items():
        values = [parts[part] for part in ("build_s", "csc_s", "map_s", "memory_gib")]
        if name == "Gradient" or all(value is None for value in values):
            continue
        text = ", ".join("None" if value is None else f"{value:.2f}" for value in values)
        print(f"{name}: cost=RelativeCost({text})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
