"""`builtin:avatars` as a torch Dataset (the only part of the package that imports torch)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .renderer import RESOLUTIONS, SIZE, render


class AvatarsDataset(Dataset):
    """Item i is render(i) as float32 (C, R, R) in [-1, 1]: R in 32/64/128 (drawn at that
    size), C = 3 (RGB) or 1 (grey, Pillow's "L" conversion, as for image folders)."""

    def __init__(self, length: int = 50_000, resolution: int = SIZE, channels: int = 3) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"builtin:avatars needs a length of at least 1 image, got {length!r}")
        if resolution not in RESOLUTIONS or channels not in (1, 3):
            raise ValueError(f"builtin:avatars comes at resolution 32, 64 or 128 with 1 or 3 "
                             f"channels, not {resolution!r} with {channels!r}")
        self.length, self.resolution, self.channels = length, resolution, channels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is outside this data set of {self.length} avatars")
        image = render(int(index), self.resolution)
        if self.channels == 1:
            image = np.asarray(Image.fromarray(image).convert("L"))[..., None]
        x = torch.from_numpy(image.transpose(2, 0, 1).copy()).float()
        return x / 127.5 - 1.0
