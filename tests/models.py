"""Small TorchScript models made for the tests, with behaviour the tests can check."""

from __future__ import annotations

import asyncio
import time
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


class GatedColorNet(nn.Module):
    """ColorNet that holds every real request inside the model until the test opens a gate.

    The gate is a 2-byte file that the model maps with `torch.from_file(shared=True)`:
    on entering, the model adds one to byte 0 (so the test knows a request is
    provably inside a worker), then spins until byte 1 is non-zero. Warm-up
    inputs are all zeros and pass straight through, so workers still get ready.
    """

    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().sum() > 0):
            flags = torch.from_file(self.gate, shared=True, size=2, dtype=torch.uint8)
            flags[0] += 1
            while int(flags[1]) == 0:
                pass
        return x.mean(dim=(2, 3)) * 10.0


class GatedLinear(nn.Module):
    """Doubles vectors of 3 features (any other width fails inside the model), held at a gate.

    The gate works as `GatedColorNet`'s; so does the warm-up (zeros pass straight through).
    """

    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gate = gate
        self.weight = nn.Parameter(torch.eye(3) * 2.0, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().sum() > 0):
            flags = torch.from_file(self.gate, shared=True, size=2, dtype=torch.uint8)
            flags[0] += 1
            while int(flags[1]) == 0:
                pass
        return x @ self.weight


class Gate:
    """The test's side of a `GatedColorNet`: see who entered, let them through."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"\0\0")

    @property
    def entered(self) -> int:
        return self.path.read_bytes()[0]

    async def wait_entered(self, count: int = 1, timeout: float = 30.0) -> None:
        """Until `count` requests have entered the model (a counter only the model moves)."""
        deadline = time.monotonic() + timeout
        while self.entered < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.entered} of {count} requests entered the model")
            await asyncio.sleep(0.005)  # pacing the read of a counter

    def open(self) -> None:
        with self.path.open("r+b") as file:
            file.seek(1)
            file.write(b"\1")


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


class TinyConvNet(nn.Module):
    """A small convolutional classifier (random weights, fixed seed) that every backend takes."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=4, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 5.0


class ReversedColorNet(nn.Module):
    """ColorNet with its classes in reverse order: a red image scores highest as class 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)).flip(1) * 10.0


class FragileNet(nn.Module):
    """A classifier whose classes differ by less than int8 (or bf16) can tell apart.

    Each class's weights are one shared vector plus differences of 0.1%, and the logits are
    scaled up, so the answer hinges on those differences: quantized, they are rounded away and
    the answers change, while float32 keeps them.
    """

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, stride=4, padding=1)
        self.head = nn.Linear(16, classes, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            shared = torch.randn(1, 16, generator=generator)
            tiny = 1e-3 * torch.randn(classes, 16, generator=generator)
            self.head.weight.copy_(shared.repeat(classes, 1) + tiny)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.head(features) * 1000.0


class ColorConvNet(nn.Module):
    """ColorNet made of the layers int8 quantizes (a 1x1 convolution, a linear head), with wide
    margins: quantized, its answers stay."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()
            self.head.weight.copy_(torch.eye(3) * 4.0)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return output


class TurnstileColorNet(nn.Module):
    """ColorNet that lets real requests out of the model one at a time, in the order they came.

    Like `GatedColorNet` (a 2-byte file mapped with `torch.from_file`): the k-th request to
    enter (counted in byte 0) spins until byte 1, the number released, exceeds k. A matrix
    product first makes torch start its OpenMP threads (when it has more than one).
    """

    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gate = gate
        self.weight = nn.Parameter(torch.randn(256, 256) * 0.05, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.weight @ self.weight).mean() * 0.0
        if bool(x.abs().sum() > 0):
            flags = torch.from_file(self.gate, shared=True, size=2, dtype=torch.uint8)
            turn = int(flags[0])
            flags[0] += 1
            while int(flags[1]) <= turn:
                pass
        return x.mean(dim=(2, 3)) * 10.0 + z


class Turnstile(Gate):
    """The test's side of a `TurnstileColorNet`."""

    def release(self, count: int = 1) -> None:
        with self.path.open("r+b") as file:
            file.seek(1)
            released = file.read(1)[0]
            file.seek(1)
            file.write(bytes([released + count]))


class ScaledColorNet(nn.Module):
    """ColorNet with one parameter, so that an exported program has a weight to pickle."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((3,), 10.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * self.scale


class _TouchOnUnpickle:
    """Unpickled, it runs `touch marker`: what a hostile pickle inside a model file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def exported(path: Path) -> Path:
    """`ScaledColorNet` as a `torch.export` program (any batch size), with colour labels."""
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        ScaledColorNet().eval(), (torch.zeros(2, 3, 224, 224),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(path))
    path.with_name(f"{path.stem}.labels.txt").write_text("\n".join(COLORS) + "\n")
    return path


def poisoned(program: Path, path: Path, marker: Path) -> Path:
    """A copy of an exported program whose weight and sample inputs are hostile pickles.

    Its weight is marked `use_pickle` (torch.export.load unpickles such weights with
    weights_only=False) and its sample inputs are not tensors (torch retries them with
    weights_only=False): loading it as torch does runs `touch marker` twice.
    """
    import io
    import json
    import zipfile

    hostile = io.BytesIO()
    torch.save(_TouchOnUnpickle(marker), hostile)
    with zipfile.ZipFile(program) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                for weight in config["config"].values():
                    weight["use_pickle"] = True
                data = json.dumps(config).encode()
            elif "data/weights/weight_" in info.filename or "data/sample_inputs/" in info.filename:
                data = hostile.getvalue()
            target.writestr(info, data)
    return path


class GatedWarmUp(nn.Module):
    """ColorNet held at a gate on every call, its warm-up too: a load that stays loading
    until the test opens the gate (see `Gate`)."""

    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flags = torch.from_file(self.gate, shared=True, size=2, dtype=torch.uint8)
        flags[0] += 1
        while int(flags[1]) == 0:
            pass
        return x.mean(dim=(2, 3)) * 10.0
