"""Input patches of a Conv2D layer as rows of a matrix (numpy "im2col").

A Conv2D layer computes, at every output position, ``patch @ K`` with
``K = kernel.reshape(kh * kw * c_in, c_out)``; :func:`patch_rows` yields those
patches (rows ordered by image, output row, output column; columns ordered
like the kernel's first three axes) so that a convolution can be treated as a
Dense layer whose samples are the output positions.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_geometry(layer) -> dict:
    """Kernel size, strides, dilation and padding of a Keras Conv2D layer."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"layer {layer.name!r}: only data_format='channels_last' is supported")
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(f"layer {layer.name!r}: grouped convolutions are not supported")
    padding = layer.padding.lower()
    if padding not in ("same", "valid"):
        raise ValueError(f"layer {layer.name!r}: unsupported padding {layer.padding!r}")
    return {"kernel_size": tuple(layer.kernel_size), "strides": tuple(layer.strides),
            "dilation_rate": tuple(layer.dilation_rate), "padding": padding}


def _pad_and_shape(x: np.ndarray, kernel_size, strides, dilation_rate, padding):
    _, h, w, _ = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation_rate
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + ekh - h, 0)
        pw = max((ow - 1) * sw + ekw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - ekh) // sh + 1, (w - ekw) // sw + 1
    return x, oh, ow, ekh, ekw


def output_size(shape, *, kernel_size, strides, dilation_rate, padding) -> tuple:
    """(out_height, out_width) of a Conv2D on inputs of ``shape`` (N, H, W, C)."""
    _, oh, ow, _, _ = _pad_and_shape(np.empty((1,) + tuple(shape[1:3]) + (1,)),
                                     kernel_size, strides, dilation_rate, padding)
    return oh, ow


def patch_rows(x: np.ndarray, *, kernel_size, strides=(1, 1), dilation_rate=(1, 1),
               padding="valid", max_rows: int = 1 << 15,
               dtype=np.float64) -> Iterator[tuple[int, slice, np.ndarray]]:
    """Yield ``(image, output_rows, patches)`` chunks of the unfolded input.

    ``x`` has shape (N, H, W, C). Each chunk holds the patches of image
    ``image`` at the output rows ``output_rows`` (a slice), as a
    ``(rows * out_width, kh * kw * C)`` array of ``dtype``; at most about
    ``max_rows`` patch rows are materialised at once, so memory stays bounded
    whatever the batch size.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, H, W, C), got {x.shape}")
    padded, oh, ow, ekh, ekw = _pad_and_shape(x, kernel_size, strides, dilation_rate, padding)
    (sh, sw), (dh, dw) = strides, dilation_rate
    windows = sliding_window_view(padded, (ekh, ekw), axis=(1, 2))
    windows = windows[:, ::sh, ::sw][:, :oh, :ow, :, ::dh, ::dw]  # N, oh, ow, C, kh, kw
    step = max(1, max_rows // max(ow, 1))
    for image in range(x.shape[0]):
        for start in range(0, oh, step):
            rows = slice(start, min(start + step, oh))
            block = windows[image, rows].transpose(0, 1, 3, 4, 2)  # r, ow, kh, kw, C
            yield image, rows, np.asarray(block, dtype=dtype).reshape(-1, block[0, 0].size)


def unfold(x: np.ndarray, **geometry) -> np.ndarray:
    """All patches of ``x`` at once, shape (N * oh * ow, kh * kw * C) (small inputs)."""
    chunks = [p for _, _, p in patch_rows(x, **geometry)]
    return np.concatenate(chunks, axis=0)


def patches_at(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, kernel_size,
               strides=(1, 1), dilation_rate=(1, 1), padding="valid",
               dtype=np.float64) -> np.ndarray:
    """The patches of one image (H, W, C) at the output positions
    ``(rows[i], cols[i])``, shape (len(rows), kh * kw * C)."""
    padded, _, _, ekh, ekw = _pad_and_shape(image[None], kernel_size, strides,
                                            dilation_rate, padding)
    (sh, sw), (dh, dw) = strides, dilation_rate
    windows = sliding_window_view(padded[0], (ekh, ekw), axis=(0, 1))  # H', W', C, ekh, ekw
    picked = windows[np.asarray(rows) * sh, np.asarray(cols) * sw][:, :, ::dh, ::dw]
    return np.asarray(picked.transpose(0, 2, 3, 1), dtype=dtype).reshape(len(rows), -1)
