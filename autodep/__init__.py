"""autodep: automatic, elastic deployment of PyTorch models over HTTP."""

from __future__ import annotations

__version__ = "0.1.0"

from autodep.blocking import BlockingAutodep
from autodep.config import ModelConfig, ServerConfig
from autodep.embedding import Autodep
from autodep.errors import AutodepError

__all__ = ["Autodep", "AutodepError", "BlockingAutodep", "ModelConfig", "ServerConfig"]
