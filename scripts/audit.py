#!/usr/bin/env python
"""Audit a saved Keras model: which attribution methods are class-insensitive on it?

Per method: CSC of random relevance injected at the logits (after the first
convolution and at the input), the random-logit SSIM, the SSIM after
randomising the top layer and, on the built-in two-object images, the
class-sensitivity gap; a verdict table printed and written to --out
(verdicts.csv, AUDIT.md, figures/). Unsupported layers and unsuitable inputs
are reported before any long work, and nothing is written then (exit code 2).
A rerun with the same --out resumes.

Examples:
    python scripts/audit.py my_model.keras --images photos/ --preprocess imagenet-caffe
    python scripts/audit.py cifar_model.h5 --methods "Gradient,LRP a1b0" --out audit_cifar
"""
import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csc_analyzers.audit import PREPROCESSING, prepare_audit, run_audit  # noqa: E402
from csc_analyzers.audit_checks import AuditError  # noqa: E402
from csc_analyzers.audit_report import format_table  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="saved Keras model: .keras or .h5 file, or a SavedModel "
                                      "directory")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="directory of image files (resized to the model's input); "
                             "default: the built-in images (32x32x3 models only)")
    parser.add_argument("--preprocess", default="unit", choices=PREPROCESSING,
                        help="unit: x/255 in [0, 1] (default); imagenet-caffe: Keras "
                             "VGG16/ResNet50 preprocessing; tf: [-1, 1]")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method names (registry display names, 'all' "
                             "for the paper's, 'extra'); default: every installed method")
    parser.add_argument("--n-images", type=int, default=16)
    parser.add_argument("--n-vectors", type=int, default=5,
                        help="random relevance vectors per image for CSC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="audit", help="output directory")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    start = time.time()
    try:
        plan = prepare_audit(args.model, images_dir=args.images, preprocessing=args.preprocess,
                             methods=args.methods, n_images=args.n_images,
                             n_vectors=args.n_vectors, seed=args.seed)
    except AuditError as error:
        print(f"audit: error: {error}", file=sys.stderr)
        return 2
    for check in plan.checks:
        if not check.ok:
            print(f"audit: {check.spec.name} not applicable: {check.reason}", file=sys.stderr)
        elif not check.sanity_ok:
            print(f"audit: {check.spec.name}: no top-layer SSIM: {check.sanity_reason}",
                  file=sys.stderr)
    print(f"auditing {len(plan.applicable)} methods on {plan.info['n_images']} images "
          f"({plan.info['source']})", file=sys.stderr)
    try:
        result = run_audit(plan, args.out, progress=not args.no_progress,
                           figures=not args.no_figures)
    except AuditError as error:
        print(f"audit: error: {error}", file=sys.stderr)
        return 2
    print(format_table(result["verdicts"]))
    print(f"\nwrote {Path(args.out) / 'verdicts.csv'}, {Path(args.out) / 'AUDIT.md'} and "
          f"{len(result['paths']) - 2} figures in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
