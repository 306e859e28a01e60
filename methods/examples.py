"""Small picture grids of what a method does to images (users check by eye that it works)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ood_bench.utils import atomic

N_EXAMPLES = 8
MIN_TILE = 64
LABEL_FONT_PX = 14


def save_grid(rows: list[torch.Tensor], path: Path, labels: tuple[str, ...] | list[str] = ()) -> Path:
    """One row per tensor ``(n, C, H, W)`` in ``[0, 1]`` (same n, C, H, W); tiny tiles are enlarged
    (nearest) to at least 64 px so the picture can be read. ``labels`` name the rows (drawn in
    a white margin on the left: "original", "masked", …)."""
    tiles = torch.cat([r.detach().float().cpu().clamp(0, 1) for r in rows])
    if tiles.shape[-1] < MIN_TILE:
        tiles = F.interpolate(tiles, scale_factor=-(-MIN_TILE // tiles.shape[-1]), mode="nearest")
    from torchvision.utils import make_grid  # deferred: see ood_bench.methods (imports)
    pad = 2
    grid = make_grid(tiles, nrow=len(rows[0]), padding=pad, pad_value=1.0)
    img = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    if labels:
        img = _with_row_labels(img, list(labels), tile=tiles.shape[-2], pad=pad)
    return atomic.write_with(path, lambda p: img.save(p, format="png"))


def _with_row_labels(grid: Image.Image, labels: list[str], tile: int, pad: int) -> Image.Image:
    font = ImageFont.load_default(size=LABEL_FONT_PX)
    draw = ImageDraw.Draw(grid)
    width = max(int(draw.textlength(t, font=font)) for t in labels) + 10
    out = Image.new("RGB", (grid.width + width, grid.height), "white")
    out.paste(grid.convert("RGB"), (width, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(labels):
        y = pad + i * (tile + pad) + tile // 2  # row centre
        draw.text((width - 6, y), text, fill="black", font=font, anchor="rm")
    return out


class ExampleRows:
    """Mixin for methods that draw what they do (before :class:`ood_bench.methods.base.OODMethod` in the bases).

    While scoring a dataset, the method calls :meth:`keep_examples` with picture rows of its
    first batch (e.g. originals, masked, inpainted); :meth:`save_examples` writes them as a grid.
    When the scores came from the cache, the first images are run through ``score_batch`` again.
    """

    example_rows: tuple[str, ...] = ()  # row labels of the grid, e.g. ("original", "masked", "inpainted")
    _examples: dict[str, torch.Tensor] | None = None  # dataset fingerprint → (rows, n, C, H, W)
    _first_batch: torch.Tensor | None = None

    def keep_examples(self, rows: list[torch.Tensor]) -> None:
        if self._first_batch is None:
            n = min(N_EXAMPLES, len(rows[0]))
            self._first_batch = torch.stack([r[:n].detach().float().cpu() for r in rows])

    def score(self, data, desc: str | None = None):
        self._first_batch = None
        out = super().score(data, desc)
        fp, offset = data.batch_origin()  # a shard at offset 0 has its set's first batch
        self._examples = {fp: self._first_batch} if offset == 0 else {}
        return out

    def save_examples(self, data, path: Path) -> bool:
        stack = (self._examples or {}).get(data.fingerprint())
        if stack is None:
            n = min(N_EXAMPLES, len(data))
            x = torch.stack([self.transform(data[i][0]) for i in range(n)]).to(self.device)
            self._first_batch = None
            with torch.no_grad():
                self.score_batch(x, self.batch_generator(data.fingerprint(), 0))
            stack = self._first_batch
        save_grid(list(stack), path, self.example_rows)
        return True
