"""Overhead augmentations: the atlas's patch jitter, and Sat2Cap's RandomResizedCrop +
RandAugment.

Pure torch on whole batches (so it runs on the training device). ``OverheadAugment``
has the semantics of torchvision's ``RandomResizedCrop`` and ``RandAugment`` (14 ops,
``num_ops`` per image chosen per image, magnitude ``m`` of 31 bins, nearest
interpolation, black fill).

The random parameters are drawn first, for the *global* batch, from a generator
seeded by the step; they are applied later to whichever slice a rank holds. So the
augmentation of a sample depends only on (seed, step, position in the global batch):
a resumed run and a run on any number of processes see the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
       "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")  # fmt: skip
GEOMETRIC = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate"}
GRAY = (0.2989, 0.587, 0.114)


class PatchJitter:
    """A random shift of up to ``jitter`` pixels per image: a ``size`` crop of patches
    cut ``2 * jitter`` pixels larger (the dtype is kept: uint8 stays uint8)."""

    def __init__(self, size: int, jitter: int):
        self.size, self.jitter = size, jitter

    def sample(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """(n, 2) long offsets (top, left) in 0..2*jitter."""
        return torch.randint(2 * self.jitter + 1, (n, 2), generator=gen)

    def __call__(self, patches: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        n, channels = patches.shape[:2]
        offsets = offsets.to(patches.device)
        span = torch.arange(self.size, device=patches.device)
        rows = (offsets[:, :1] + span)[:, None, :, None]
        cols = (offsets[:, 1:] + span)[:, None, None, :]
        images = torch.arange(n, device=patches.device)[:, None, None, None]
        bands = torch.arange(channels, device=patches.device)[None, :, None, None]
        return patches[images, bands, rows, cols]


@dataclass
class AugmentParams:
    """Per-image parameters: crop boxes (top, left, height, width), ops and signs."""

    boxes: torch.Tensor  # (N, 4) long
    ops: torch.Tensor  # (N, num_ops) long, indices into OPS
    signs: torch.Tensor  # (N, num_ops) float, +1 or -1

    def __getitem__(self, rows: slice) -> AugmentParams:
        return AugmentParams(self.boxes[rows], self.ops[rows], self.signs[rows])


class OverheadAugment:
    def __init__(
        self, out_size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
        num_ops: int = 2, magnitude: int = 9, bins: int = 31,
    ):  # fmt: skip
        if not 0 <= magnitude < bins:
            raise ValueError(f"RandAugment magnitude must be in [0, {bins}), got {magnitude}")
        self.out_size, self.scale, self.ratio = out_size, scale, ratio
        self.num_ops, self.level = num_ops, magnitude / (bins - 1)
        self.posterize_bits = 8 - int(round(magnitude / ((bins - 1) / 4)))

    def sample(self, gen: torch.Generator, n: int, in_size: int) -> AugmentParams:
        """Draw parameters for ``n`` square images of side ``in_size``."""
        tries = 10  # torchvision's attempts before falling back to the whole image
        area = in_size * in_size * torch.empty(n, tries).uniform_(*self.scale, generator=gen)
        log_r = torch.empty(n, tries).uniform_(
            math.log(self.ratio[0]), math.log(self.ratio[1]), generator=gen
        )
        aspect = log_r.exp()
        w = (area * aspect).sqrt().round().long()
        h = (area / aspect).sqrt().round().long()
        ok = (w > 0) & (w <= in_size) & (h > 0) & (h <= in_size)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
        pick = first.clamp(min=0).unsqueeze(1)
        w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.full((n,), in_size))
        h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.full((n,), in_size))
        top = (torch.rand(n, generator=gen) * (in_size - h + 1)).long()
        left = (torch.rand(n, generator=gen) * (in_size - w + 1)).long()
        ops = torch.randint(len(OPS), (n, self.num_ops), generator=gen)
        signs = torch.randint(2, (n, self.num_ops), generator=gen).float() * 2 - 1
        return AugmentParams(torch.stack([top, left, h, w], 1), ops, signs)

    def __call__(self, patches: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """uint8 (N, 3, P, P) -> float (N, 3, out, out) in [0, 1]."""
        x = self._crop(patches.float() / 255.0, params.boxes)
        for k in range(self.num_ops):
            ops, signs = params.ops[:, k].to(x.device), params.signs[:, k].to(x.device)
            for op in ops.unique().tolist():
                rows = (ops == op).nonzero().squeeze(1)
                x[rows] = self._apply(OPS[op], x[rows], signs[rows])
        return x

    def _crop(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(x), x.shape[1], self.out_size, self.out_size, device=x.device)
        for i, (top, left, h, w) in enumerate(boxes.tolist()):
            out[i] = F.interpolate(x[i : i + 1, :, top : top + h, left : left + w], size=(self.out_size,) * 2,
                                   mode="bilinear", antialias=True, align_corners=False)[0]  # fmt: skip
        return out.clamp_(0.0, 1.0)

    def _apply(self, op: str, x: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        lv, s = self.level, sign.view(-1, 1, 1, 1)
        if op == "identity":
            return x
        if op in GEOMETRIC:
            return _affine(x, op, sign * _GEOMETRIC_MAX[op](x.shape[-1]) * lv)
        if op == "brightness":
            return _blend(x, torch.zeros_like(x), 1 + 0.9 * lv * s)
        if op == "color":
            return _blend(x, _gray(x).expand_as(x), 1 + 0.9 * lv * s)
        if op == "contrast":
            return _blend(
                x, _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), 1 + 0.9 * lv * s
            )
        if op == "sharpness":
            return _blend(x, _smoothed(x), 1 + 0.9 * lv * s)
        if op == "posterize":
            mask = 0xFF & ~(2 ** (8 - self.posterize_bits) - 1)
            return ((x * 255).round().to(torch.uint8) & mask).float() / 255.0
        if op == "solarize":
            return torch.where(x >= 1.0 - lv, 1.0 - x, x)
        if op == "autocontrast":
            lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
            flat = hi <= lo
            return torch.where(flat, x, (x - lo) / torch.where(flat, 1.0, hi - lo)).clamp(0.0, 1.0)
        return _equalize(x)


_GEOMETRIC_MAX = {  # torchvision's largest magnitudes, per image side in pixels
    "shear_x": lambda side: 0.3, "shear_y": lambda side: 0.3, "rotate": lambda side: 30.0,
    "translate_x": lambda side: 150.0 / 331.0 * side, "translate_y": lambda side: 150.0 / 331.0 * side,
}  # fmt: skip


def _blend(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * x + (1 - factor) * degenerate).clamp(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(GRAY, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _smoothed(x: torch.Tensor) -> torch.Tensor:
    """torchvision's sharpness degenerate: a 3x3 smoothing inside, the border unchanged."""
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, 3, 3)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=x.shape[1])
    return out


def _affine(x: torch.Tensor, op: str, amount: torch.Tensor) -> torch.Tensor:
    """Shear (about the top-left corner), translate (pixels) or rotate (degrees, about
    the centre), nearest pixel, black outside: output pixel -> input pixel mapping."""
    n, _, size, _ = x.shape
    coords = torch.arange(size, device=x.device, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xx, yy = xx.expand(n, size, size), yy.expand(n, size, size)
    a = amount.view(n, 1, 1).float()
    if op == "shear_x":
        src_x, src_y = xx - a * yy, yy
    elif op == "shear_y":
        src_x, src_y = xx, yy - a * xx
    elif op == "translate_x":
        src_x, src_y = xx - a, yy
    elif op == "translate_y":
        src_x, src_y = xx, yy - a
    else:
        c, theta = size / 2.0, torch.deg2rad(a)
        dx, dy = xx - c, yy - c
        src_x = c + dx * theta.cos() - dy * theta.sin()
        src_y = c + dx * theta.sin() + dy * theta.cos()
    grid = torch.stack([src_x, src_y], dim=-1) * (2.0 / size) - 1.0
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel histogram equalisation on 8-bit values (torchvision's)."""
    n, c = x.shape[:2]
    v = (x * 255).round().long().flatten(2)  # (N, C, HW)
    hist = torch.zeros(n, c, 256, device=x.device).scatter_add_(
        2, v, torch.ones_like(v, dtype=torch.float32)
    )
    last = 255 - (hist.flip(2) > 0).float().argmax(2, keepdim=True)
    step = ((hist.sum(2, keepdim=True) - hist.gather(2, last)) / 255).floor()
    lut = ((hist.cumsum(2) + (step / 2).floor()) / step.clamp(min=1)).floor()
    lut = F.pad(lut, (1, 0))[:, :, :-1].clamp(0, 255)
    out = torch.where(step > 0, lut.gather(2, v), v.float())
    return (out / 255.0).view_as(x)
