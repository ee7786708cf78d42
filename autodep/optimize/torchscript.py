"""TorchScript variants: frozen and optimized for inference, optionally channels-last and bf16.

bf16 weights compute in bf16 only where the CPU has it natively (the candidate needs
`native_bf16`); the wrapper casts the inputs to the weights' type and the outputs back to
float32, so that the runner and the codecs see what the model as given returns.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from autodep.optimize.candidates import Options
from autodep.optimize.source import Source
from autodep.worker.loading import LoadContext


class _Cast(torch.nn.Module):
    """A model of one image batch returning a tensor, in another dtype and memory format."""

    def __init__(self, net: torch.nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.channels_last = channels_last

    def cast(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.net(self.cast(x))
        return output.float()


class _CastDict(_Cast):
    """The same for models returning a dict of tensors (torchvision segmentation)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {key: value.float() for key, value in self.net(self.cast(x)).items()}


def prepare(source: Source, options: Options, out: Path) -> Path:
    dtype = getattr(torch, options["dtype"])
    channels_last = bool(options["channels_last"])
    net = source.module()
    with warnings.catch_warnings():  # torch.jit's deprecation notices: TorchScript is the input
        warnings.simplefilter("ignore")
        if dtype != torch.float32 or channels_last:
            returns_dict = source.main_key() is not None
            net = net.to(dtype=dtype)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            wrapper = (_CastDict if returns_dict else _Cast)(net, dtype, channels_last)
            net = torch.jit.script(wrapper.eval())
        path = out / "model.pt"
        torch.jit.freeze(net.eval()).save(str(path))
    return path


def load(artifact: Path, options: Options, context: LoadContext) -> Any:
    """The frozen module, optimized for inference here: its MKLDNN-prepacked weights do not
    survive saving (loading them fails with "required keyword attribute 'value'")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.load(str(artifact), map_location="cpu").eval()  # type: ignore[no-untyped-call]
        return torch.jit.optimize_for_inference(frozen)
