"""Small TorchScript models made for the tests, with behaviour the tests can check."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

COLORS = ("red", "green", "blue")


class ColorNet(nn.Module):
    """Classifies an image by its strongest colour channel: red, green or blue."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * 10.0


class SlowColorNet(nn.Module):
    """ColorNet after a fixed amount of busy work, so that requests overlap."""

    def __init__(self, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations
        self.weight = nn.Parameter(torch.randn(256, 256) * 0.05, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.weight
        for _ in range(self.iterations):
            z = torch.tanh(z @ self.weight)
        return x.mean(dim=(2, 3)) * 10.0 + z.mean() * 0.0


def save(module: nn.Module, path: Path, labels: tuple[str, ...] | None = COLORS) -> Path:
    torch.jit.script(module.eval()).save(str(path))
    if labels is not None:
        path.with_name(f"{path.stem}.labels.txt").write_text("\n".join(labels) + "\n")
    return path
