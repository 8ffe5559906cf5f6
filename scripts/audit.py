#!/usr/bin/env python
"""Audit a saved Keras model: which attribution methods are class-insensitive on it?

Per method: CSC of random relevance injected at the logits (after the first
convolution and at the input), the random-logit SSIM, the SSIM after
randomising the top layer and, on the built-in two-object images, the
class-sensitivity gap; a verdict table printed and written to --out
(verdicts.csv, AUDIT.md, figures/). Unsupported layers and unsuitable inputs
are reported before any long work, and nothing is written then (exit code 2).
Before the experiments the audit checks every method's layers without
building anything, builds one method (Gradient, when chosen) on a copy of
the model, times it on one image and prints the estimated time and peak
memory of the whole audit, the other methods' costs predicted from it with
the registry's relative costs; --time-budget drops the methods that do not
fit (and says which). Each method is then built once, in a TensorFlow graph
of its own released after its experiments, so the peak memory is that of
the heaviest method (--graph shared: every method built and timed before
the experiments, in one graph; memory grows with every method). A rerun
with the same --out resumes. TensorFlow's oneDNN operations are turned off
(TF_ENABLE_ONEDNN_OPTS=0) unless that variable is set: they keep memory
after each released graph. With memory to spare, TF_ENABLE_ONEDNN_OPTS=1
runs standard convolutions faster (ResNet50V2 at 224 px: Integrated
Gradients' CSC unit 33 s against 49 s; MobileNetV2: the same speed).

Examples:
    python scripts/audit.py my_model.keras --images photos/ --preprocess imagenet-caffe
    python scripts/audit.py cifar_model.h5 --methods "Gradient,LRP a1b0" --out audit_cifar
    python scripts/audit.py big.keras --images photos/ --time-budget 20m --estimate-only
"""
import argparse
import importlib.util
import logging
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The arguments are checked before TensorFlow is imported (several seconds),
# so this script names its choices itself; tests/test_audit_cli.py checks that
# they equal csc_analyzers.audit.run.PREPROCESSING / GRAPH_MODES and the registry's names.
PREPROCESSING = ("unit", "imagenet-caffe", "tf")
GRAPH_MODES = ("per-method", "shared")


def method_names() -> list:
    """The registry's display names, read from csc_analyzers/registry.py
    without importing the package (whose import starts TensorFlow)."""
    path = ROOT / "csc_analyzers" / "registry.py"
    spec = importlib.util.spec_from_file_location("_audit_registry_names", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return [s.name for s in module.ALL_METHODS]


def methods_argument(text: str) -> str:
    """``--methods``: a comma-separated list with at least one known name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: no method given; name at least one (comma-separated), or 'all'")
    valid = method_names()
    unknown = [name for name in names if name not in valid and name not in ("all", "extra")]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method {unknown[0]!r}; valid names: all, extra, " + ", ".join(valid))
    return ",".join(names)


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``20m``, ``1.5h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive duration such as 600, "
                                         "600s, 20m or 1.5h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def positive_int(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {minimum}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Time and memory are estimated from one method's analyzer built and run on "
               "one image (--graph shared: every method's); the estimate assumes the "
               "machine stays as loaded as it was then.")
    parser.add_argument("model", help="saved Keras model: .keras or .h5 file, or a SavedModel "
                                      "directory")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="directory of image files (resized to the model's input); "
                             "default: the built-in images (32x32x3 models only)")
    parser.add_argument("--preprocess", default="unit", choices=PREPROCESSING,
                        help="unit: x/255 in [0, 1] (default); imagenet-caffe: Keras "
                             "VGG16/ResNet50 preprocessing; tf: [-1, 1]")
    parser.add_argument("--methods", default=None, type=methods_argument,
                        help="comma-separated method names (registry display names, 'all' "
                             "for the paper's, 'extra'); default: every installed method")
    parser.add_argument("--n-images", type=positive_int(1), default=16)
    parser.add_argument("--n-vectors", type=positive_int(2), default=5,
                        help="random relevance vectors per image for CSC (>= 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="audit", help="output directory")
    parser.add_argument("--time-budget", type=duration, default=None, metavar="DURATION",
                        help="wall-time budget of the whole audit (e.g. 20m): methods whose "
                             "estimated cost does not fit are dropped, in the order given, "
                             "and named")
    parser.add_argument("--graph", default="per-method", choices=GRAPH_MODES,
                        help="per-method (default): each method built once, in a TensorFlow "
                             "graph of its own, one method measured and the others predicted "
                             "for the estimate; peak memory of the heaviest method. shared: "
                             "every method built and measured before the experiments, in "
                             "one graph; memory grows with the methods")
    parser.add_argument("--estimate-only", action="store_true",
                        help="check, estimate time and memory, print them and stop")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # TensorFlow's oneDNN operations keep memory after every released graph
    # (MobileNetV2: 3.4 GiB after DeepLIFT, not returned by malloc_trim);
    # without them it is returned. The price is speed on standard
    # convolutions (ResNet50V2 about 1.5x slower; docs/performance.md)
    if "tensorflow" not in sys.modules:  # a setting for the process TensorFlow starts in
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from csc_analyzers.audit import prepare_audit, run_audit  # starts TensorFlow
    from csc_analyzers.audit.checks import AuditError
    from csc_analyzers.audit.report import format_table

    def say(text):
        print(text, file=sys.stderr, flush=True)

    try:
        plan = prepare_audit(args.model, images_dir=args.images, preprocessing=args.preprocess,
                             methods=args.methods, n_images=args.n_images,
                             n_vectors=args.n_vectors, seed=args.seed,
                             time_budget=args.time_budget, started=start,
                             report=None if args.no_progress else say, graph=args.graph)
    except AuditError as error:
        print(f"audit: error: {error}", file=sys.stderr)
        return 2
    for check in plan.checks:
        if check.final:  # per-method: the others are checked when their turn comes
            for line in check.lines():
                print(f"audit: {line}", file=sys.stderr)
    say(plan.estimate.describe())
    if args.estimate_only:
        return 0
    say(f"auditing {len(plan.applicable)} methods on {plan.info['n_images']} images "
        f"({plan.info['source']})")
    try:
        result = run_audit(plan, args.out, progress=not args.no_progress,
                           figures=not args.no_figures,
                           report=lambda text: print(text, file=sys.stderr, flush=True))
    except AuditError as error:
        print(f"audit: error: {error}", file=sys.stderr)
        return 2
    print(format_table(result["verdicts"]))
    print(f"\nwrote {Path(args.out) / 'verdicts.csv'}, {Path(args.out) / 'AUDIT.md'} and "
          f"{len(result['paths']) - 2} figures in {time.time() - start:.0f} s "
          f"(estimated {plan.estimate.total_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
