"""Batched augmentation on the device: rotate, shift and zoom every image of
a batch at once, each by its own random amount.

One affine matrix per image (`random_affine`), one sampling grid for the
whole batch (`sampling_grid`), one `grid_sample` (`warp`): no PIL and no
per-image Python, so it runs as fast on a GPU as the training step itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def affine_matrices(angle: torch.Tensor, zoom: torch.Tensor | None = None,
                    shift: torch.Tensor | None = None) -> torch.Tensor:
    """The (N, 2, 3) matrices that rotate by angle[i] degrees (counter-clockwise),
    zoom by zoom[i] and shift by shift[i] = (dx, dy), a fraction of the image size,
    in the form `F.affine_grid` takes: each maps an output pixel to where it
    samples the input (the inverse transform), in units where the image spans
    [-1, 1]."""
    n = angle.shape[0]
    zoom = torch.ones(n, device=angle.device) if zoom is None else zoom
    shift = torch.zeros(n, 2, device=angle.device) if shift is None else shift
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad) / zoom, torch.sin(rad) / zoom
    return torch.stack([
        torch.stack([cos, -sin, -2 * shift[:, 0]], dim=1),
        torch.stack([sin, cos, -2 * shift[:, 1]], dim=1),
    ], dim=1)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The (N, H, W, 2) grid that `F.grid_sample` reads for matrices theta (N, 2, 3):
    the same numbers as `F.affine_grid(theta, (N, 1, H, W), align_corners=False)`.

    `affine_grid` does N small matrix products; here all N transforms are one
    product of the pixel coordinates (H*W, 3) with the matrices side by side
    (3, 2N): one large operation instead of N small ones (time both on your
    machine before you rely on the difference).
    """
    n = theta.shape[0]
    opts = dict(device=theta.device, dtype=theta.dtype)
    # Pixel centres in [-1, 1] (align_corners=False), as (x, y, 1) rows.
    xs = (torch.arange(width, **opts) * 2 + 1) / width - 1
    ys = (torch.arange(height, **opts) * 2 + 1) / height - 1
    coords = torch.stack([xs.repeat(height), ys.repeat_interleave(width),
                          torch.ones(height * width, **opts)], dim=1)
    grid = coords @ theta.permute(2, 0, 1).reshape(3, 2 * n)     # (H*W, N*2)
    return grid.view(height, width, n, 2).permute(2, 0, 1, 3)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image of x (B, 1, H, W) with its matrix theta[b] (B, 2, 3).

    Pixels that come from outside the image are 0 (background, before
    normalisation).
    """
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = sampling_grid(theta, x.shape[2], x.shape[3])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def affine(x: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor | None = None,
           shift: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each image of x (B, 1, H, W) by angle[b] degrees (counter-clockwise),
    zoom it by zoom[b] and shift it by shift[b] = (dx, dy), a fraction of its size."""
    return warp(x, affine_matrices(angle, zoom, shift))


def warps(degrees: float, translate: float, scale: tuple[float, float]) -> bool:
    """Whether these ranges move any pixel (else every transform is the identity)."""
    return not (degrees == 0 and translate == 0 and tuple(scale) == (1.0, 1.0))


def random_affine(n: int, generator: torch.Generator, degrees: float = 0.0,
                  translate: float = 0.0, scale: tuple[float, float] = (1.0, 1.0)
                  ) -> torch.Tensor | None:
    """`n` random transforms as (n, 2, 3) matrices for `warp`, or None when the
    ranges make every transform the identity.

    Angles are uniform in [-degrees, degrees], shifts up to `translate` of the
    image size, zooms in `scale`. The numbers come from `generator` on the CPU,
    so CPU and GPU runs draw the same transforms.
    """
    if not warps(degrees, translate, scale):
        return None
    u = torch.rand(n, 4, generator=generator)
    angle = (2 * u[:, 0] - 1) * degrees
    zoom = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    shift = (2 * u[:, 2:] - 1) * translate
    return affine_matrices(angle, zoom, shift)


def augment(x: torch.Tensor, generator: torch.Generator, degrees: float = 0.0,
            translate: float = 0.0, scale: tuple[float, float] = (1.0, 1.0)
            ) -> torch.Tensor:
    """Randomly rotate, shift and zoom each image of a batch x (B, 1, H, W) in
    [0, 1] independently (ranges as in `random_affine`)."""
    theta = random_affine(x.shape[0], generator, degrees, translate, scale)
    return x if theta is None else warp(x, theta)
