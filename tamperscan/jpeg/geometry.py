"""Block grid -> the pixels the other evidence sees. The JPEG grid lives in the STORED
orientation; the decoder (`preprocess.decode`) shows the image EXIF-upright and the stages
see it squashed to s x s. Each output pixel's centre is mapped back through the orientation
to the stored pixel, and from there to its 8x8 block (nearest: no blur across the grid)."""

from __future__ import annotations

import numpy as np


def stored_coordinates(y: np.ndarray, x: np.ndarray, height: int, width: int,
                       orientation: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous coordinates (y, x) in the upright image -> the stored image's, for EXIF
    orientation 1..8 (the transpositions Pillow's ``exif_transpose`` applies)."""
    h, w = height, width
    return {
        1: (y, x), 2: (y, w - x), 3: (h - y, w - x), 4: (h - y, x),
        5: (x, y), 6: (h - x, y), 7: (h - x, w - y), 8: (x, w - y),
    }.get(orientation, (y, x))


def upright_map(cells: np.ndarray, height: int, width: int, orientation: int, size: int,
                cell: int = 8, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``cells`` (rows, cols), one value per ``cell`` x ``cell`` block of a grid starting at
    ``origin`` (dy, dx) in the stored ``height`` x ``width`` image -> (size, size) float32
    over the upright image (pixels outside the grid take the nearest block's value)."""
    upright_h, upright_w = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
    centres = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(centres * upright_h, centres * upright_w, indexing="ij")
    sy, sx = stored_coordinates(y, x, height, width, orientation)
    rows = np.clip(((sy - origin[0]) // cell).astype(np.int64), 0, cells.shape[0] - 1)
    cols = np.clip(((sx - origin[1]) // cell).astype(np.int64), 0, cells.shape[1] - 1)
    return cells[rows, cols].astype(np.float32)
