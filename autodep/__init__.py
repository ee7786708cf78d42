"""autodep: automatic, elastic deployment of PyTorch models over HTTP."""

from __future__ import annotations

from autodep.blocking import BlockingAutodep
from autodep.config import ModelConfig, ServerConfig
from autodep.embedding import Autodep
from autodep.errors import AutodepError
from autodep.version import __version__

__all__ = [
    "Autodep",
    "AutodepError",
    "BlockingAutodep",
    "ModelConfig",
    "ServerConfig",
    "__version__",
]
