"""Pattern training runs: image sources, batching and resumable estimation.

:func:`train_patterns` streams batches through a
:class:`~csc_analyzers.pattern.estimators.PatternEstimator`, saves the
accumulated statistics every few batches (atomically) and writes the pattern
file at the end. Rerun with the same arguments after an interruption, it
loads the saved statistics and skips the batches they already hold, so the
image order must be deterministic (all sources here are).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .estimators import PatternEstimator
from .storage import PatternSet, save_patterns

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def center_crop_resize(image: np.ndarray, size: tuple) -> np.ndarray:
    """Resize the shorter side to ``256/224 * size`` (the ImageNet convention)
    and crop the centre ``size`` (height, width); returns uint8 RGB."""
    from skimage.transform import resize

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    height, width = size
    scale = max(height, width) * 256 / 224 / min(image.shape[:2])
    new_h = max(height, int(round(image.shape[0] * scale)))
    new_w = max(width, int(round(image.shape[1] * scale)))
    resized = resize(image, (new_h, new_w), preserve_range=True, anti_aliasing=True)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.clip(resized[top:top + height, left:left + width], 0, 255).astype(np.uint8)


def directory_images(directory, n_images: int | None, size: tuple) -> Iterator[np.ndarray]:
    """uint8 RGB images of ``size`` from the image files under ``directory``
    (recursively, sorted by path; the first ``n_images``)."""
    from skimage.io import imread

    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"image directory {str(root)!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {str(root)!r}")
    if n_images is not None:
        if len(files) < n_images:
            raise ValueError(f"{str(root)!r} holds {len(files)} images, {n_images} requested")
        files = files[:n_images]
    for path in files:
        yield center_crop_resize(imread(path), size)


SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "retina", "colorwheel", "camera", "brick", "grass",
                  "gravel", "coins", "moon", "cell", "page", "text")


def skimage_photos(n_images: int, size: tuple, seed: int = 0) -> Iterator[np.ndarray]:
    """``n_images`` augmented views of scikit-image's bundled photos (no
    download): image ``i`` is photo ``i % 17`` (grey photos repeated to RGB),
    a random square crop of 35-100 % of its shorter side, a random horizontal
    flip, resized to ``size``; drawn with ``np.random.default_rng([seed, i])``."""
    import skimage.data
    from skimage.transform import resize

    photos = {}
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        name = SKIMAGE_PHOTOS[index % len(SKIMAGE_PHOTOS)]
        if name not in photos:
            photo = np.asarray(getattr(skimage.data, name)())
            photos[name] = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        photo = photos[name]
        side = int(min(photo.shape[:2]) * rng.uniform(0.35, 1.0))
        top = rng.integers(0, photo.shape[0] - side + 1)
        left = rng.integers(0, photo.shape[1] - side + 1)
        crop = photo[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = resize(crop, size, preserve_range=True, anti_aliasing=True)
        yield np.clip(image, 0, 255).astype(np.uint8)


def glorot_uniform_weights(model, rng: np.random.Generator) -> None:
    """Set every ``*kernel*`` weight of ``model`` to Glorot-uniform values drawn
    with ``rng`` (Keras' default initialiser, reproducible) and every bias to
    zero; other weights (e.g. BatchNormalization's) keep their initial values."""
    import tensorflow as tf

    variables, values = [], []
    for layer in model.layers:
        for variable in layer.weights:
            name = variable.name.split("/")[-1]
            shape = tuple(variable.shape)
            if "kernel" in name:
                receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
                fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                values.append(rng.uniform(-limit, limit, size=shape).astype(np.float32))
            elif name.startswith("bias"):
                values.append(np.zeros(shape, np.float32))
            else:
                continue
            variables.append(variable)
    tf.compat.v1.keras.backend.batch_set_value(list(zip(variables, values)))


def keras_application(name: str, weights=None, *, seed: int = 0):
    """``(model, preprocess)`` of ``keras.applications.<name>`` (e.g. "VGG16")
    with its own ``preprocess_input``. ``weights=None`` gives random weights,
    reproducible across runs: :func:`glorot_uniform_weights` with
    ``np.random.default_rng(seed)``."""
    from tensorflow import keras

    constructor = getattr(keras.applications, name, None)
    module = getattr(keras.applications, name.lower(), None)
    if constructor is None or module is None or not hasattr(module, "preprocess_input"):
        raise ValueError(f"keras.applications has no model {name!r} with a preprocess_input")
    model = constructor(weights=weights)
    if weights is None:
        glorot_uniform_weights(model, np.random.default_rng(seed))

    def preprocess(images):
        return module.preprocess_input(np.asarray(images, dtype=np.float32))

    return model, preprocess


def load_model(spec: str, weights=None, *, seed: int = 0):
    """``(model, preprocess)`` for a command line: a project network name
    (:func:`csc_analyzers.models.load_network`) or ``keras:NAME`` for
    ``keras.applications.NAME``; ``weights="none"`` asks for random weights,
    ``None`` for the default (ImageNet for ``keras:`` models)."""
    random = weights is not None and str(weights).lower() == "none"
    if spec.startswith("keras:"):
        return keras_application(spec[len("keras:"):],
                                 None if random else (weights or "imagenet"), seed=seed)
    from csc_analyzers.models import load_network

    kwargs = {} if weights is None else {"weights": None if random else weights}
    network = load_network(spec, seed=seed, **kwargs)
    return network.model, network.preprocess


def batches_of(images: Iterable[np.ndarray], batch_size: int,
               preprocess: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    """Group single uint8 images (or arrays of images) into preprocessed
    batches of ``batch_size`` (the last may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buffer = []
    for image in images:
        buffer.append(image)
        if len(buffer) == batch_size:
            yield np.asarray(preprocess(np.stack(buffer)), dtype=np.float32)
            buffer = []
    if buffer:
        yield np.asarray(preprocess(np.stack(buffer)), dtype=np.float32)


def statistics_path(out) -> Path:
    """Where the partial statistics of the run writing ``out`` are kept."""
    out = Path(out)
    return out.with_name(out.stem + ".statistics.npz")


def train_patterns(model, batches: Iterable[np.ndarray], *, out, estimator: str = "relu",
                   n_batches: int | None = None, checkpoint_every: int = 20,
                   keep_statistics: bool = False, progress: bool = True,
                   **estimator_options) -> PatternSet:
    """Estimate patterns of ``model`` from ``batches`` and write them to ``out``.

    Partial statistics go to :func:`statistics_path` every
    ``checkpoint_every`` batches; if that file exists when the run starts, the
    run resumes from it. It is deleted after the pattern file is written
    unless ``keep_statistics`` (which also saves the final statistics).
    """
    out = Path(out)
    partial = statistics_path(out)
    est = PatternEstimator(model, estimator, **estimator_options)
    skip = est.load_statistics(partial) if partial.is_file() else 0
    bar = None
    if progress:
        from ..experiments.progress import progress_bar

        bar = progress_bar(n_batches, "pattern statistics", unit="batch")
        if skip:
            bar.update(skip)
    try:
        est.fit(batches, skip=skip, progress=bar, checkpoint=partial,
                checkpoint_every=checkpoint_every, save_at_end=keep_statistics)
    finally:
        if bar is not None:
            bar.close()
    patterns = est.patterns()
    save_patterns(out, patterns)
    if not keep_statistics:
        partial.unlink(missing_ok=True)
    return patterns
