"""The `cluster:` section of a model repository YAML (read without importing Ray).

cluster:
  ray: auto                # or HOST:PORT of the GCS; --ray overrides it
  placement:               # models that may only run on nodes with these Ray resources
    big-model: [big-memory]
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from autodep.errors import ConfigError


class ClusterSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ray: str | None = None
    placement: dict[str, list[str]] = {}


def load_cluster_section(path: str | Path | None) -> ClusterSection:
    """The repository's `cluster:` mapping; an empty section without a file or the key."""
    if path is None:
        return ClusterSection()
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    section = document.get("cluster") if isinstance(document, dict) else None
    if section is None:
        return ClusterSection()
    try:
        return ClusterSection.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(f"{path}: cluster: {exc.errors()[0]['msg']}") from None
