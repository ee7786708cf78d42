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


class ColorSegmenter(nn.Module):
    """Per pixel: background (0) where dark, else 1 + the strongest colour channel."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        channels = x.argmax(dim=1, keepdim=True)
        bright = (x.max(dim=1, keepdim=True).values > 0).to(torch.long)
        classes = (channels + 1) * bright
        logits = torch.nn.functional.one_hot(classes.squeeze(1), 4).permute(0, 3, 1, 2)
        return {"out": logits.to(torch.float32)}


class CornerDetector(nn.Module):
    """Finds the bright (non-black) area of each image: one confident box, one weak one."""

    def forward(
        self, images: list[torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        detections: list[dict[str, torch.Tensor]] = []
        for image in images:
            bright = image.max(dim=0).values > 0.5
            box = torch.zeros(4)
            if bool(bright.any()):
                ys = bright.any(dim=1).nonzero().flatten()
                xs = bright.any(dim=0).nonzero().flatten()
                box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            detections.append(
                {
                    "boxes": torch.stack([box, box / 2]),
                    "labels": torch.tensor([1, 2]),
                    "scores": torch.tensor([0.9, 0.2]),
                }
            )
        return {}, detections


class KeywordClassifier(nn.Module):
    """Text: 'positive' when the token `good` outnumbers `bad`."""

    def __init__(self, good: int, bad: int) -> None:
        super().__init__()
        self.good = good
        self.bad = bad

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor]:
        good = ((ids == self.good) & (mask > 0)).sum(dim=1).to(torch.float32)
        bad = ((ids == self.bad) & (mask > 0)).sum(dim=1).to(torch.float32)
        return (torch.stack([bad - good, good - bad], dim=1) * 3.0,)


class Doubler(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class ReversedColorNet(nn.Module):
    """ColorNet with its classes in reverse order: a red image scores highest as class 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)).flip(1) * 10.0
