"""Configuration: the server's settings and one `ModelConfig` per served model.

Every CLI flag is one field of `ServerConfig` and one `AUTODEP_*` environment
variable (`autodep.serve` builds its parser from the fields). Worker, queue and
batching settings given on the server are defaults that a model's own entry in a
repository YAML overrides.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from autodep.autoscale.policy import Settings as AutoscaleSettings
from autodep.errors import ConfigError
from autodep.optimize.candidates import NAMES
from autodep.storage.refs import is_remote, remote_fields, with_local

if TYPE_CHECKING:
    from autodep.storage.store import Store

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SECRET_FIELDS = frozenset({"auth_token"})  # never echoed in an error message


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Preprocess(_Strict):
    """How an image becomes the model's input tensor."""

    resize: tuple[int, int] | None = (224, 224)  # (height, width); None keeps the image size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: Literal["RGB", "BGR", "L"] = "RGB"

    @field_validator("resize", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in value):
            raise ValueError("std values must be non-zero")
        return value


class Workers(_Strict):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1)


class Batching(_Strict):
    max_batch_size: int | None = Field(default=None, ge=1)
    max_queue_delay_ms: float | None = Field(default=None, ge=0)


class Autoscaling(_Strict):
    """Per-model overrides of the autoscaler's settings (see autodep.autoscale.policy)."""

    target_utilisation: float | None = Field(default=None, gt=0, le=1)
    upscale_window_s: float | None = Field(default=None, gt=0)
    downscale_window_s: float | None = Field(default=None, gt=0)


def _optimize_mode(value: str) -> str:
    """`auto`, `off` or a candidate's name (autodep.optimize.candidates)."""
    if value not in ("auto", "off", *NAMES):
        raise ValueError(f"optimize mode must be auto, off or one of {', '.join(NAMES)}")
    return value


class Optimize(_Strict):
    """Per-model settings of the optimizer (autodep.optimize); unset ones take the server's."""

    mode: str | None = None  # auto | off | a candidate's name
    tolerance: float = Field(default=0.99, gt=0, le=1)  # least agreement with the model as given
    samples: Path | None = None  # a folder of inputs for the accuracy gate; None: generated
    budget: float | None = Field(default=None, gt=0)  # seconds a search may take
    int8: bool | None = None  # False: no int8 candidates in the search

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        return None if value is None else _optimize_mode(value)


class VersionPolicy(_Strict):
    """Which of a model's versions are served: the newest N, or the ones named."""

    latest: int | None = Field(default=None, ge=1)
    specific: tuple[int, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        if (self.latest is None) == (self.specific is None):
            raise ValueError("give exactly one of `latest: N` or `specific: [versions]`")
        return self


class ModelConfig(_Strict):
    """One served model. Unset worker/queue/batching fields take the server's values.

    `versions` maps version numbers to files; without it, `path` is version 1.
    With it, `path` may be left out and defaults to the newest version's file.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: Path
    versions: dict[int, Path] = {}
    version_policy: VersionPolicy = VersionPolicy(latest=1)
    input: Literal["image", "tensor", "text"] = "image"
    output: Literal["classification", "segmentation", "detection", "raw"] = "classification"
    labels: Path | None = None
    preprocess: Preprocess = Preprocess()
    tokenizer: Path | None = None
    max_length: int = Field(default=64, ge=2)
    input_shape: tuple[int, ...] | None = None  # for `tensor` models: one item's shape, for warm-up
    workers: Workers = Workers()
    batching: Batching = Batching()
    max_queue: int | None = Field(default=None, ge=1)
    autoscaling: Autoscaling = Autoscaling()
    optimize: Optimize = Optimize()
    # The s3:// URL each field was fetched from ("path", "versions.2", ...): the fields hold
    # the local cached copies; poll mode watches these URLs (autodep.storage).
    remote: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _path_of_newest_version(cls, data: Any) -> Any:
        if isinstance(data, dict) and "path" not in data and isinstance(data.get("versions"), dict):
            numbers = [k for k in data["versions"] if str(k).isdigit()]
            if numbers:
                return {**data, "path": data["versions"][max(numbers, key=int)]}
        return data

    @field_validator("versions")
    @classmethod
    def _positive(cls, value: dict[int, Path]) -> dict[int, Path]:
        bad = sorted(n for n in value if n < 1)
        if bad:
            raise ValueError(f"version numbers must be 1 or more, not {bad[0]}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        specific = self.version_policy.specific or ()
        missing = sorted(set(specific) - set(self.version_numbers()))
        if missing:
            raise ValueError(
                f"version_policy.specific names version {missing[0]}, which `versions` lacks"
            )
        if self.input == "text" and self.tokenizer is None:
            raise ValueError("a text model needs `tokenizer` (a tokenizers JSON file)")
        if self.input == "text" and self.output != "classification" and self.output != "raw":
            raise ValueError("a text model's output must be `classification` or `raw`")
        if self.output in ("segmentation", "detection") and self.input != "image":
            raise ValueError(f"`{self.output}` output needs `input: image`")
        w = self.workers
        if w.min is not None and w.max is not None and w.min > w.max:
            raise ValueError("workers.min must not exceed workers.max")
        return self

    def version_numbers(self) -> list[int]:
        return sorted(self.versions) if self.versions else [1]

    def version_path(self, number: int) -> Path:
        return self.versions[number] if self.versions else self.path

    def label_names(self) -> list[str]:
        if self.labels is None:
            return []
        return self.labels.read_text().splitlines()


ENV_PREFIX = "AUTODEP_"  # every ServerConfig field is also AUTODEP_<FIELD> (the CLI's too)


def from_environment(name: str) -> str | None:
    """`AUTODEP_<NAME>`: for the CLI inputs that are not settings (--model, --labels, --config).

    With `ServerConfig` reading its fields (pydantic-settings, `env_prefix`), this is the
    only place that reads autodep's environment variables.
    """
    return os.environ.get(ENV_PREFIX + name.upper()) or None


class ServerConfig(BaseSettings):
    """Settings of one server process: each field is a CLI flag (`--max-workers`) and an
    environment variable (`AUTODEP_MAX_WORKERS`); its description is the flag's help.

    Given values win over the environment, which wins over the defaults; so an
    embedded `Autodep` honours `AUTODEP_OPTIMIZE=off` as the server does.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    host: str = Field(
        default="127.0.0.1",
        description="address to listen on (with --ray, node: each node's own)",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on (0: a free one)")
    max_workers: int | None = Field(
        default=None, ge=1, description="most worker processes per model (default: the cores)"
    )
    min_workers: int = Field(default=1, ge=0, description="fewest workers kept alive per model")
    threads_per_worker: int | None = Field(
        default=None, ge=1, description="torch threads per worker (default: cores / max-workers)"
    )
    max_queue: int = Field(default=64, ge=1, description="requests waiting per model before 503")
    max_items_per_request: int | None = Field(
        default=None,
        ge=1,
        description="items (V2 BYTES elements or rows) one request may hold "
        "(default: the model's --max-queue)",
    )
    idle_timeout: float = Field(
        default=30.0, gt=0, description="seconds before an idle worker above min-workers stops"
    )
    max_body: int = Field(default=16 * 1024 * 1024, ge=1, description="request body limit in bytes")
    request_timeout: float = Field(
        default=60.0, gt=0, description="seconds before a request is answered 504"
    )
    body_timeout: float = Field(
        default=30.0, gt=0, description="seconds a request body may stall before 408"
    )
    grace_period: float = Field(
        default=30.0, ge=0, description="seconds to finish queued work at shutdown"
    )
    max_batch_size: int = Field(
        default=8, ge=1, description="most requests per model call (1 turns batching off)"
    )
    max_queue_delay_ms: float = Field(
        default=0.0, ge=0, description="how long a batch may wait to fill up"
    )
    max_total_workers: int | None = Field(
        default=None, ge=1, description="workers of all models together (default: the cores)"
    )
    target_utilisation: float = Field(
        default=0.8, gt=0, le=1, description="busy share of a worker the autoscaler aims at"
    )
    upscale_window: float = Field(
        default=2.0, gt=0, description="seconds of traffic that scaling up looks at"
    )
    tick: float = Field(default=1.0, gt=0, description="seconds between autoscaling decisions")
    auth_token: SecretStr | None = Field(
        default=None, description="a bearer token every route but /v2/health/* then needs"
    )
    auth_token_file: Path | None = Field(
        default=None, description="a file holding the bearer token (instead of --auth-token)"
    )
    optimize: str = Field(
        default="auto",
        description="auto (cached, else searched: see --optimize-wait), off, or a candidate's name",
    )
    optimize_budget: float = Field(
        default=300.0, gt=0, description="seconds a model's optimization search may take"
    )
    optimize_wait: bool = Field(
        default=False,
        description="on: a first start searches before it serves; off: it serves the file "
        "as given at once and rolls the search's choice out when found",
    )
    optimize_int8: bool = Field(
        default=True,
        description="on or off: off leaves the int8 candidates out of the search",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="where optimization results are kept (default: ~/.cache/autodep)",
    )
    model_control_mode: Literal["none", "explicit", "poll"] = Field(
        default="none",
        description="none | explicit (the /v2/repository load and unload routes) "
        "| poll (watch the files)",
    )
    repository_poll_s: float = Field(
        default=2.0, gt=0, description="seconds between looks at the files in poll mode"
    )
    grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="also serve the V2 protocol over gRPC on this port (0: a free one)",
    )
    ray: str | None = Field(
        default=None,
        description="serve on every node of this Ray cluster: its address, or auto (autodep[ray])",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="the S3-compatible store s3:// models come from "
        "(default: AWS_ENDPOINT_URL, else AWS)",
    )
    trust_pt2_pickles: bool = Field(
        default=False,
        description="load .pt2 files that carry pickled objects or shared libraries: code "
        "that runs at load (default off: such files are refused)",
    )
    server_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="niceness the server process takes once a model's queue has overflowed "
        "for a tick with all its workers serving (0: never): refusals then yield the cores "
        "to the workers",
    )
    log_level: str = Field(default="INFO", description="logging level")
    # Not flags: what --model, --labels and --config name (see server_config).
    repository: Path | None = None  # the --config YAML, re-read by load requests and poll mode
    models: tuple[ModelConfig, ...] = ()

    @field_validator("optimize")
    @classmethod
    def _mode(cls, value: str) -> str:
        return _optimize_mode(value)

    @field_validator("auth_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the token must not be empty")
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_token_file(cls, fields: Any) -> Any:
        if not isinstance(fields, dict) or fields.get("auth_token_file") is None:
            return fields
        if fields.get("auth_token") is not None:
            raise ValueError("give auth_token or auth_token_file, not both")
        path = Path(fields["auth_token_file"])
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"auth_token_file: cannot read {path}: {exc.strerror}") from None
        if not token:
            raise ValueError(f"auth_token_file: {path} is empty")
        return {**fields, "auth_token": token}

    @model_validator(mode="after")
    def _unique_names(self) -> ServerConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self

    def optimize_for(self, model: ModelConfig) -> tuple[str, float]:
        """A model's optimize mode and search budget (seconds)."""
        return model.optimize.mode or self.optimize, model.optimize.budget or self.optimize_budget

    def int8_for(self, model: ModelConfig) -> bool:
        """Whether a model's search tries int8 candidates."""
        return self.optimize_int8 if model.optimize.int8 is None else model.optimize.int8

    def settings_for(self, model: ModelConfig) -> PoolSettings:
        """The effective worker, queue and batching settings of one model."""
        cores = cpu_count()
        max_workers = model.workers.max or self.max_workers or cores
        min_workers = model.workers.min if model.workers.min is not None else self.min_workers
        threads = model.workers.threads or self.threads_per_worker
        delay = model.batching.max_queue_delay_ms
        scaling = model.autoscaling
        return PoolSettings(
            cores=cores,
            min_workers=min(min_workers, max_workers),
            max_workers=max_workers,
            threads=threads,
            max_queue=model.max_queue or self.max_queue,
            max_items=self.max_items_per_request or model.max_queue or self.max_queue,
            idle_timeout=self.idle_timeout,
            request_timeout=self.request_timeout,
            max_batch_size=model.batching.max_batch_size or self.max_batch_size,
            max_queue_delay=(self.max_queue_delay_ms if delay is None else delay) / 1000,
            autoscale=AutoscaleSettings(
                min_workers=min(min_workers, max_workers),
                max_workers=max_workers,
                tick_s=self.tick,
                upscale_window_s=scaling.upscale_window_s or self.upscale_window,
                downscale_window_s=scaling.downscale_window_s or self.idle_timeout,
                target_utilisation=scaling.target_utilisation or self.target_utilisation,
            ),
        )

    def given(self, model: ModelConfig) -> frozenset[str]:
        """The PoolSettings fields of `model` set explicitly (a flag, its environment variable or
        the model's entry), told from defaults by `model_fields_set`: they win over a plan."""
        sources = {
            "max_workers": ("max_workers", model.workers, "max"),
            "threads": ("threads_per_worker", model.workers, "threads"),
            "max_batch_size": ("max_batch_size", model.batching, "max_batch_size"),
            "max_queue_delay": ("max_queue_delay_ms", model.batching, "max_queue_delay_ms"),
        }
        return frozenset(
            name
            for name, (flag, entry, field) in sources.items()
            if flag in self.model_fields_set
            or (field in entry.model_fields_set and getattr(entry, field) is not None)
        )

    @property
    def worker_budget(self) -> int:
        """Workers all models may run together."""
        return self.max_total_workers or cpu_count()


class PoolSettings(_Strict):
    """Resolved settings of one model's worker pool."""

    cores: int
    min_workers: int
    max_workers: int
    threads: int | None  # None: adapt each batch to the number of busy workers
    max_queue: int
    max_items: int  # items one request may hold: refused before they are parsed
    idle_timeout: float
    request_timeout: float
    max_batch_size: int
    max_queue_delay: float  # seconds
    autoscale: AutoscaleSettings

    @property
    def start_threads(self) -> int:
        """Threads a worker starts with: its share of the cores when all workers run."""
        return self.threads or max(1, self.cores // self.max_workers)


def model_from_file(
    path: str | Path, labels: str | Path | None = None, *, store: Store | None = None
) -> ModelConfig:
    """A bare model file (or s3:// object): image classification with the DESIGN.md defaults."""
    if is_remote(path) or is_remote(labels):
        return _model_from_object(str(path), labels, store or _default_store())
    path = Path(path)
    if labels is None:
        beside = path.with_name(f"{path.stem}.labels.txt")
        labels = beside if beside.exists() else None
    try:
        model = ModelConfig(
            name=path.stem, path=path, labels=None if labels is None else Path(labels)
        )
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    _check_files([model], path)
    return model


def _model_from_object(path: str, labels: str | Path | None, store: Store) -> ModelConfig:
    if labels is None and is_remote(path):
        labels = store.labels_beside(path)
    entry: dict[str, Any] = {"name": Path(path).stem, "path": path}
    if labels is not None:
        entry["labels"] = str(labels)
    return model_from_entry(entry, Path.cwd(), path, store=store)


def load_repository(path: str | Path, *, store: Store | None = None) -> list[ModelConfig]:
    """Read and validate a model repository YAML; paths in it are relative to the file.

    s3:// URLs in it are fetched through `store` (default: the standard AWS settings).
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise ConfigError(f"{path}: expected a mapping with a `models:` list")
    models = [
        model_from_entry(
            entry, path.parent, str(path), f"models[{index}]", store=store or _default_store()
        )
        for index, entry in enumerate(document["models"])
    ]
    _check_files(models, path)
    return models


def model_from_entry(
    entry: Any,
    base: Path,
    source: str,
    position: str = "model entry",
    *,
    store: Store | None = None,
) -> ModelConfig:
    """One model entry (a YAML mapping, or JSON in a load request); paths relative to base.

    s3:// URLs are fetched through `store`; without one (a load request) they are refused:
    which objects may load as code is the operator's choice, made in the YAML or --model.
    """
    where = f"{source}: {position}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: each model entry must be a mapping")
    if "name" in entry:
        where = f"{source}: model {entry['name']!r}"
    remote = remote_fields(entry)
    if remote:
        if store is None:
            raise ConfigError(f"{where}: s3:// paths are allowed only in the repository YAML")
        try:
            entry = {**with_local(entry, store.localize(remote)), "remote": remote}
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
    try:
        model = ModelConfig(**entry)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    return _resolve_paths(model, base)


def refetch(model: ModelConfig, store: Store) -> ModelConfig:
    """The entry with its s3:// fields fetched again (their current versions)."""
    if not model.remote:
        return model
    entry = model.model_dump(exclude={"remote"})
    entry = {**with_local(entry, store.localize(model.remote)), "remote": model.remote}
    return ModelConfig(**entry)


def refetch_all(config: ServerConfig) -> ServerConfig:
    """The config with every s3:// file fetched into this host's cache (a cluster node's)."""
    if not any(m.remote for m in config.models):
        return config
    store = store_of(config)
    return config.model_copy(update={"models": tuple(refetch(m, store) for m in config.models)})


def _default_store() -> Store:
    return store_of()


def store_of(config: ServerConfig | None = None) -> Store:
    """The object store a server's s3:// paths are read from (its endpoint and cache)."""
    from autodep.storage.store import store_for  # boto3 is imported only when needed

    if config is None:
        return store_for()
    return store_for(config.s3_endpoint, config.cache_dir)


def _resolve_paths(model: ModelConfig, base: Path) -> ModelConfig:
    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    return model.model_copy(
        update={
            "path": resolve(model.path),
            "versions": {n: resolve(p) for n, p in model.versions.items()},
            "labels": resolve(model.labels),
            "tokenizer": resolve(model.tokenizer),
            "optimize": model.optimize.model_copy(
                update={"samples": resolve(model.optimize.samples)}
            ),
        }
    )


def _check_files(models: list[ModelConfig], source: Path | str) -> None:
    for model in models:
        files = [(f"versions.{n}", p) for n, p in sorted(model.versions.items())]
        files += [(f, getattr(model, f)) for f in ("path", "labels", "tokenizer")]
        for field, value in files:
            if value is not None and not value.is_file():
                raise ConfigError(f"{source}: model {model.name!r}: {field}: no such file {value}")
        samples = model.optimize.samples
        if samples is not None and not samples.is_dir():
            raise ConfigError(
                f"{source}: model {model.name!r}: optimize.samples: no such folder {samples}"
            )


def check_files(model: ModelConfig, source: str) -> None:
    """Every file a model entry names exists (ConfigError naming the field if not)."""
    _check_files([model], source)


def _describe(exc: ValidationError) -> str:
    """Each error as `field: what is wrong, not <the value given>`."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "entry"
        given = error.get("input")
        # A missing field has no value, a model-level check gets the whole entry,
        # and a secret is not repeated.
        shows_value = (
            error["type"] != "missing"
            and error["loc"]
            and not isinstance(given, dict)
            and field not in SECRET_FIELDS
        )
        value = f", not {_shorten(repr(given))}" if shows_value else ""
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}{value}")
    return "; ".join(parts)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_config(**fields: Any) -> ServerConfig:
    try:
        return ServerConfig(**fields)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


ModelSource = str | Path | ModelConfig


def server_config(
    models: ModelSource | Sequence[ModelSource] | None,
    labels: str | Path | None,
    repository: str | Path | None,
    **settings: Any,
) -> ServerConfig:
    """The whole config from model files and/or a repository YAML, and other settings
    (ServerConfig fields); what `Service(...)` and the CLI build."""
    sources: list[ModelSource]
    if models is None:
        sources = []
    elif isinstance(models, (str, Path, ModelConfig)):
        sources = [models]
    else:
        sources = list(models)
    if labels is not None and len(sources) != 1:
        raise ConfigError("labels= goes with exactly one model file")
    # What fetching s3:// models needs of the settings: the endpoint and the cache.
    store = store_of(
        build_config(**{k: v for k, v in settings.items() if k in ("s3_endpoint", "cache_dir")})
    )
    configs = [
        s if isinstance(s, ModelConfig) else model_from_file(s, labels, store=store)
        for s in sources
    ]
    if repository is not None:
        configs += load_repository(repository, store=store)
    where = {} if repository is None else {"repository": Path(repository)}
    return build_config(models=tuple(configs), **where, **settings)
