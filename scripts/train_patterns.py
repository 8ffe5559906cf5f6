#!/usr/bin/env python
"""Estimate PatternNet/PatternAttribution patterns of a network from data.

Examples::

    # CIFAR net on the built-in dataset
    python scripts/train_patterns.py --network cifar-net --data builtin \\
        --n-images 5000 --batch-size 100 --out patterns/cifar-net.npz

    # VGG-16 (ImageNet weights) on an ImageNet directory (as the paper)
    python scripts/train_patterns.py --network vgg16 --weights imagenet \\
        --data imagenet /data/imagenet/train --n-images 50000 --batch-size 32 \\
        --estimator relu --out patterns/vgg16.npz

An interrupted run resumes from ``<out stem>.statistics.npz`` when started
again with the same arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from residual_support import _tf  # noqa: F401,E402  (graph mode first)

import numpy as np  # noqa: E402

from csc_analyzers.pattern.estimators import ESTIMATORS  # noqa: E402
from csc_analyzers.pattern.training import (batches_of, center_crop_resize,  # noqa: E402
                                            directory_images, load_model, skimage_photos,
                                            train_patterns)

DATA_KINDS = ("builtin", "cifar10", "imagenet", "skimage")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", required=True,
                        help="network name of csc_analyzers.models.load_network, or "
                             "keras:NAME for keras.applications.NAME (e.g. keras:VGG16)")
    parser.add_argument("--weights", default=None,
                        help="weights (e.g. 'imagenet', a file, 'none' for random; default: "
                             "the network's default)")
    parser.add_argument("--data", nargs="+", required=True, metavar="KIND [DIR]",
                        help="builtin | cifar10 | imagenet DIR | skimage (augmented "
                             "scikit-image sample photos)")
    parser.add_argument("--n-images", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--estimator", choices=ESTIMATORS, default="relu")
    parser.add_argument("--positions-per-image", type=int, default=None,
                        help="output positions per image used for convolutions "
                             "(default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data order (builtin) and position sampling")
    parser.add_argument("--checkpoint-every", type=int, default=20,
                        help="save partial statistics every N batches")
    parser.add_argument("--keep-statistics", action="store_true",
                        help="keep the partial statistics file after success")
    parser.add_argument("--out", required=True, help="pattern file (.npz) to write")
    args = parser.parse_args(argv)
    kind = args.data[0]
    if kind not in DATA_KINDS:
        parser.error(f"--data: unknown kind {kind!r}; valid: {DATA_KINDS}")
    if kind == "imagenet" and len(args.data) != 2:
        parser.error("--data imagenet needs the image directory: --data imagenet DIR")
    if kind != "imagenet" and len(args.data) != 1:
        parser.error(f"--data {kind} takes no directory")
    if args.n_images < 1 or args.batch_size < 1:
        parser.error("--n-images and --batch-size must be >= 1")
    return args


def _resized(images, size):
    for image in images:
        yield image if image.shape[:2] == tuple(size) else center_crop_resize(image, size)


def image_source(kind, directory, n_images, size, seed):
    """uint8 RGB images of ``size`` in a deterministic order."""
    if kind == "imagenet":
        return directory_images(directory, n_images, size)
    if kind == "skimage":
        return skimage_photos(n_images, size, seed)
    if kind == "builtin":
        from csc_analyzers.data.builtin import load

        images = load("train", n=n_images, seed=seed)[0]
    else:
        from tensorflow import keras

        images = keras.datasets.cifar10.load_data()[0][0][:n_images]
    if len(images) < n_images:
        raise ValueError(f"--data {kind} has {len(images)} images, {n_images} requested")
    return _resized(images, size)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, preprocess = load_model(args.network, args.weights, seed=args.seed)
    size = tuple(model.input.shape[1:3])
    images = image_source(args.data[0], args.data[1] if len(args.data) > 1 else None,
                          args.n_images, size, args.seed)
    batches = batches_of(images, args.batch_size, preprocess)
    n_batches = -(-args.n_images // args.batch_size)
    patterns = train_patterns(
        model, batches, out=args.out, estimator=args.estimator,
        n_batches=n_batches, checkpoint_every=args.checkpoint_every,
        keep_statistics=args.keep_statistics,
        positions_per_image=args.positions_per_image, rng=np.random.default_rng(args.seed))
    print(f"wrote {args.out}: {len(patterns.patterns)} layers, estimator {args.estimator}")
    for name, count in patterns.n_samples.items():
        print(f"  {name}: {patterns.layer_estimators[name]} estimator, {count} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
