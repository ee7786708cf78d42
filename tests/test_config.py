"""Configuration: defaults, per-model overrides and validation messages."""

from __future__ import annotations

import pytest

from autodep.config import build_config, cpu_count, load_repository, model_from_file
from autodep.errors import ConfigError


def test_threads_share_the_cores_between_workers(color_model):
    model = model_from_file(color_model)
    cores = cpu_count()
    one = build_config(models=(model,), max_workers=1).settings_for(model)
    assert (one.threads, one.start_threads) == (None, cores)  # None: adapts per batch
    many = build_config(models=(model,), max_workers=cores * 2).settings_for(model)
    assert many.start_threads == 1
    fixed = build_config(models=(model,), threads_per_worker=3).settings_for(model)
    assert (fixed.threads, fixed.start_threads) == (3, 3)


def test_bare_model_defaults(color_model):
    model = model_from_file(color_model)
    assert model.name == "colors"
    assert model.input == "image" and model.output == "classification"
    assert model.preprocess.resize == (224, 224)
    assert model.label_names() == ["red", "green", "blue"]


def test_repository_entries_override_server_defaults(tmp_path, color_model):
    (tmp_path / "models.yaml").write_text(
        f"""
models:
  - name: small
    path: {color_model}
    preprocess: {{resize: 64}}
    workers: {{min: 0, max: 3}}
    batching: {{max_batch_size: 2}}
"""
    )
    (model,) = load_repository(tmp_path / "models.yaml")
    settings = build_config(models=(model,), max_workers=1, min_workers=1).settings_for(model)
    assert (settings.min_workers, settings.max_workers, settings.max_batch_size) == (0, 3, 2)
    assert model.preprocess.resize == (64, 64)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("models: [{name: a, path: x.pt, outptu: raw}]", "model 'a': outptu: Extra inputs"),
        (
            "models: [{name: a, path: m.pt, output: clasification}]",
            "model 'a': output: Input should be 'classification', 'segmentation', 'detection' "
            "or 'raw', not 'clasification'",
        ),
        ("models: [{name: a, path: m.pt, max_queue: 0}]", "max_queue: Input should be greater"),
        ("models: [{name: a, path: m.pt, max_queue: 0}]", "or equal to 1, not 0"),
        ("models: [{name: a, path: m.pt, workers: {max: lots}}]", "workers.max: "),
        ("models: [{name: a, path: m.pt, workers: {max: lots}}]", "not 'lots'"),
        ("models: [{name: a, path: missing.pt}]", "model 'a': path: no such file"),
        ("models: [{name: a, path: m.pt, input: text}]", "needs `tokenizer`"),
        ("models: [{name: a, path: m.pt, workers: {min: 3, max: 1}}]", "workers.min"),
        ("models: {a: 1}", "`models:` list"),
        ("models: [{name: a, path: m.pt", "not valid YAML"),
    ],
)
def test_bad_repository_names_file_model_and_field(tmp_path, text, words):
    (tmp_path / "m.pt").write_bytes(b"")
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_repository(path)
    assert str(path) in caught.value.message
    assert words in caught.value.message
