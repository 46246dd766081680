"""8x8 block DCT and IDCT as two matrix products over all blocks at once (JPEG's transform
is the orthonormal 2-D DCT-II), vectorised: no loop over blocks."""

from __future__ import annotations

import numpy as np

_n = np.arange(8)
#: Orthonormal DCT-II matrix: row k is the k-th basis vector.
D = np.sqrt(np.where(_n[:, None] == 0, 1 / 8, 2 / 8)) * np.cos(
    (2 * _n[None, :] + 1) * _n[:, None] * np.pi / 16)
#: (frequency, pixel): the 2-D basis images, both in natural (row-major) order.
BASIS = np.einsum("uy,vx->uvyx", D, D).reshape(64, 64)


def transform(blocks: np.ndarray, m: np.ndarray) -> np.ndarray:
    """m @ X @ m.T for every 8x8 block X of ``blocks`` (..., 8, 8)."""
    shape = blocks.shape
    x = blocks.reshape(-1, 8) @ m.T  # rows: X @ m.T
    x = x.reshape(-1, 8, 8).transpose(0, 2, 1).reshape(-1, 8) @ m.T  # (m @ X @ m.T).T
    return x.reshape(-1, 8, 8).transpose(0, 2, 1).reshape(shape)


def decode_plane(blocks: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Quantised coefficients (rows, cols, 64) -> the component plane a decoder outputs,
    (rows*8, cols*8) float32 rounded and clipped to 0..255 like libjpeg's output."""
    rows, cols = blocks.shape[:2]
    coef = (blocks.astype(np.float32) * table.astype(np.float32)).reshape(rows, cols, 8, 8)
    pixels = transform(coef, D.T.astype(np.float32)) + 128
    plane = pixels.transpose(0, 2, 1, 3).reshape(rows * 8, cols * 8)
    return np.clip(np.rint(plane), 0, 255)


def plane_dct(plane: np.ndarray, dy: int = 0, dx: int = 0,
              max_blocks: int | None = None) -> np.ndarray:
    """Unquantised DCT coefficients of ``plane`` - 128 on the 8x8 grid starting at (dy, dx):
    (rows, cols, 64), whole blocks only. With ``max_blocks``, only evenly spaced block rows,
    at most that many blocks in all: a histogram needs no more, and on a 12-megapixel plane
    the whole grid costs 0.15 s."""
    sub = plane[dy:, dx:]
    rows, cols = sub.shape[0] // 8, sub.shape[1] // 8
    blocks = sub[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8)
    if max_blocks is not None and rows * cols > max_blocks:
        blocks = blocks[np.linspace(0, rows - 1, max(max_blocks // cols, 1)).astype(np.int64)]
    blocks = blocks.transpose(0, 2, 1, 3).astype(np.float32) - 128
    return transform(blocks, D.astype(np.float32)).reshape(blocks.shape[0], cols, 64)


def unclipped(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) bool: the 8x8 blocks of ``plane`` with no pixel clipped to 0 or 255
    (clipping breaks the rounding model of the double-quantisation evidence)."""
    blocks = plane.reshape(rows, 8, cols, 8)
    return ~((blocks <= 0) | (blocks >= 255)).any(axis=(1, 3))
