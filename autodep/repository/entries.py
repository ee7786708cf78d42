"""Which model entry a load without a config means."""

from __future__ import annotations

from collections.abc import Mapping

from autodep.config import ModelConfig, ServerConfig, load_repository, store_of
from autodep.errors import ConfigError, ModelNotFound
from autodep.repository.errors import LoadFailed


def entry_for(name: str, config: ServerConfig, loaded: Mapping[str, ModelConfig]) -> ModelConfig:
    """A load without a config: the repository YAML's entry, else the one it was loaded from."""
    repository = config.repository
    if repository is not None:
        try:
            entries = {e.name: e for e in load_repository(repository, store=store_of(config))}
        except ConfigError as exc:
            raise LoadFailed(exc.message) from None
        if name in entries:
            return entries[name]
    if name in loaded:
        return loaded[name]
    where = f" nor in {repository}" if repository is not None else ""
    raise ModelNotFound(
        f"no model named {name!r} is loaded{where}; send its entry as "
        '{"parameters": {"config": "<JSON model entry>"}}'
    )
