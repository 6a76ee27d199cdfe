"""The two small PNGs of the chat goldens (tests/data/images/chat/), drawn with numpy, no photos.

a.png 300x200 (W x H): aspect 1.5; with max_num=2 the candidates (1,1) and (2,1) tie on |1.5 - r|
      and the card's tie rule keeps (1,1) (60000 px is not > 0.5*448*448*2), so 1 tile, no thumbnail.
b.png 150x450: aspect 1/3 -> (1,2): 2 tiles + thumbnail = 3 tiles.
Content: smooth colour ramps (exercise the bicubic filter), a disc and a stripe pattern (edges), and
seeded noise in the right quarter (kept small so the PNGs stay small).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def draw(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / (width - 1)
    g = 255 * y / (height - 1)
    b = 127.5 + 127.5 * np.sin(2 * np.pi * (x + 2 * y) / 37.0)
    img = np.stack([r, g, b], axis=-1)
    cy, cx, rad = height * 0.4, width * 0.6, min(width, height) * 0.25
    disc = (y - cy) ** 2 + (x - cx) ** 2 < rad ** 2
    img[disc] = [250.0, 240.0, 20.0]
    stripes = ((x // 7 + y // 11) % 2 == 0) & (y > height * 0.8)
    img[stripes] = 255 - img[stripes]
    img += rng.normal(0, 3, img.shape) * (x > width * 0.75)[..., None]  # noise in one band only (PNG size)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main(out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (w, h, seed) in {"a.png": (300, 200, 1), "b.png": (150, 450, 2)}.items():
        p = out_dir / name
        Image.fromarray(draw(w, h, seed), "RGB").save(p, format="PNG", optimize=False, compress_level=9)
        paths.append(p)
    return paths
