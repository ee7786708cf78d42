"""version_policy: which of a model entry's versions are served (a pure function)."""

from __future__ import annotations

from autodep.config import ModelConfig, VersionPolicy


def chosen(numbers: list[int], policy: VersionPolicy) -> list[int]:
    """The version numbers a policy serves, oldest first."""
    if policy.specific is not None:
        return sorted(set(policy.specific) & set(numbers))
    assert policy.latest is not None
    return sorted(numbers)[-policy.latest :]


def select_versions(entry: ModelConfig) -> dict[int, ModelConfig]:
    """Each served version of an entry as a config of its own (its file in `path`)."""
    return {
        number: entry.model_copy(update={"path": entry.version_path(number), "versions": {}})
        for number in chosen(entry.version_numbers(), entry.version_policy)
    }
