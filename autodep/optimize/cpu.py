"""What the cache and the candidates need to know about this machine, read without torch."""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

# Libraries whose versions change what a candidate produces or how fast it runs.
LIBRARIES = ("autodep", "torch", "torchvision", "openvino", "onnxruntime", "onnx", "nncf")
# CPU flags of native bf16 arithmetic (torch's get_cpu_capability() cannot see them).
NATIVE_BF16 = frozenset({"amx_bf16", "avx512_bf16"})
# CPU flags of int8 dot-product instructions, fastest first: the paths int8 variants run on.
INT8_PATHS = ("amx_int8", "avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class Machine:
    cpu: str  # the model name, e.g. "Intel(R) Xeon(R) Processor"
    flags: tuple[str, ...]  # sorted
    versions: tuple[tuple[str, str], ...]  # (library, version), in LIBRARIES order

    @property
    def native_bf16(self) -> bool:
        return not NATIVE_BF16.isdisjoint(self.flags)

    @property
    def int8_paths(self) -> tuple[str, ...]:
        """The CPU's int8 instruction sets (see INT8_PATHS), fastest first; () for none."""
        return tuple(path for path in INT8_PATHS if path in self.flags)

    def describe(self) -> str:
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        int8 = f"int8: {', '.join(self.int8_paths)}" if self.int8_paths else "no int8 path"
        return f"{self.cpu} ({bf16}; {int8})"


@functools.cache
def this_machine() -> Machine:
    cpu, flags = _cpuinfo(Path("/proc/cpuinfo"))
    return Machine(cpu, flags, tuple((name, _version(name)) for name in LIBRARIES))


def _cpuinfo(path: Path) -> tuple[str, tuple[str, ...]]:
    """The first processor's model name and flags (x86 `flags`, Arm `Features`)."""
    cpu, flags = "unknown", ""
    try:
        text = path.read_text()
    except OSError:
        return cpu, ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and cpu == "unknown":
            cpu = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value
    return cpu, tuple(sorted(set(flags.split())))


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
