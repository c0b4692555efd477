"""Every knob of `gan-serve serve`, from flags or GAN_SERVE_* environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..backends import parse_device
from ..errors import InputError
from ..limits import Limits, bounds
from ..spec import LoadOptions
from . import defaults as d

SERVER_LIMITS = ("max_n", "max_steps", "max_keys", "max_pixels")  # the Limits a server may lower
MAX_CONNECTIONS = d.MAX_CONNECTIONS  # the default cap where the open-files limit allows more


def _limit(name: str) -> Any:
    """A setting of one limit: at most its default (gan_serve.limits), at least its lowest."""
    low, top = bounds()[name]
    return Field(top, ge=low, le=top)


def connection_budget() -> int | None:
    """The connections this process's open-files limit (RLIMIT_NOFILE, `ulimit -n`) can hold
    besides the server's own files (models, logs, the event loop, thread pools: 32) and the
    connections accepted in one burst before they are refused (a quarter); None: no limit."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return soft - 32 - soft // 4


def default_max_connections() -> int:
    """--max-connections when not given: the connection budget, at most MAX_CONNECTIONS."""
    budget = connection_budget()
    return MAX_CONNECTIONS if budget is None else max(1, min(MAX_CONNECTIONS, budget))


class ServeSettings(BaseSettings):
    """`GAN_SERVE_MAX_BATCH=32`, `GAN_SERVE_MODELS='["a.onnx", "b.pth"]'`, ...; flags win."""

    model_config = SettingsConfigDict(env_prefix="GAN_SERVE_", extra="forbid")

    models: list[str] = Field(default_factory=lambda: ["default"])  # paths or bundled names
    model: str | None = None  # GAN_SERVE_MODEL, the other commands' one model: used if models is unset
    host: str = d.HOST  # bind address
    port: int = Field(d.PORT, ge=1, le=65535)
    backend: str = "auto"  # auto, torch, onnx, or torchscript (with trust_code)
    trust_code: bool = False  # with backend torchscript: load TorchScript files (runs their code)
    device: str = "cpu"  # cpu, cuda, cuda:N, auto, tensorrt; a comma list with workers (worker i
    # runs on device i mod len(list))
    workers: int = Field(d.WORKERS, ge=1, le=64)  # uvicorn worker processes, each loading the models once
    precision: str | None = None  # fp32, bf16, fp16, int8; None: the artifact's own
    max_batch: int = Field(d.MAX_BATCH, ge=1, le=4096)  # images in one merged forward pass
    max_delay_ms: float = Field(d.MAX_DELAY_MS, ge=0, le=1000)  # extra wait for a batch to fill (0: none;
    # requests that arrive while a batch computes still merge into the next one)
    max_queue: int = Field(d.MAX_QUEUE, ge=1)  # images accepted per model before 429
    max_n: int = _limit("max_n")  # images, candidates or frames in one request
    max_steps: int = _limit("max_steps")  # frames per interpolation segment
    max_keys: int = _limit("max_keys")  # keys of one interpolation path
    max_pixels: int = _limit("max_pixels")  # output pixels per request
    rank_with: str | None = None  # discriminator checkpoint for best-of-N ("candidates")
    directions: list[str] = Field(default_factory=list)  # directions files requests name by stem
    request_timeout_s: float = Field(30.0, gt=0)  # a request waiting longer gets 503
    max_body_bytes: int = Field(64 * 1024, ge=1024)  # larger request bodies get 413
    header_timeout_s: float = Field(d.HEADER_TIMEOUT_S, gt=0, le=3600)  # a request head must arrive
    # within this (closed after 1-2x this); also bounds idle keep-alive connections
    body_timeout_s: float = Field(d.BODY_TIMEOUT_S, gt=0, le=3600)  # a request body must arrive
    # within this (408)
    max_connections: int = Field(default_factory=default_max_connections, ge=1)  # open connections;
    # beyond them new ones get 503 at once (the default leaves room in the open-files limit)
    api_key_env: str | None = None  # name of the env var holding the bearer key; None: open
    cors_origins: list[str] = Field(default_factory=list)  # CORS is off unless listed
    naive_endpoint: bool = False  # expose POST /generate-naive (benchmarks only)
    arch: str | None = None  # module:Class for checkpoints that are not DCGAN-style (runs its code)
    arch_kwargs: str | None = None  # JSON object of constructor kwargs for arch
    output_range: str | None = None  # LOW,HIGH value range of the raw output; required with arch
    z_dim: int | None = None  # latent size of arch models (default 100)

    def load_options(self) -> LoadOptions:
        """How to load the checkpoints among `models` (artifacts describe themselves)."""
        return LoadOptions.from_text(self.arch, self.arch_kwargs, self.output_range, self.z_dim)

    @property
    def limits(self) -> Limits:
        """The request limits of this server (gan_serve.request)."""
        return Limits(**{name: getattr(self, name) for name in SERVER_LIMITS})

    def connections_note(self) -> str | None:
        """A note when max_connections is more than the open-files limit has room for."""
        budget = connection_budget()
        if budget is None or self.max_connections <= budget:
            return None
        return (f"note: --max-connections {self.max_connections} is more than the open-files limit "
                f"leaves room for ({budget}); past that, clients are reset: raise `ulimit -n`")

    @model_validator(mode="after")
    def _single_model(self) -> ServeSettings:
        if self.model is not None and "models" not in self.model_fields_set:
            self.models = [self.model]
        return self

    @model_validator(mode="after")
    def _devices(self) -> ServeSettings:
        for device in self.devices:
            parse_device(device)
        if len(self.devices) > self.workers:
            n = len(self.devices)
            raise ValueError(f"{n} devices need at least as many workers (--workers {n}): "
                             f"worker i runs on device i mod {n}")
        return self

    @property
    def devices(self) -> list[str]:
        """The devices of `device` ('cuda:0,cuda:1' -> two)."""
        return [d.strip() for d in self.device.split(",")]


def settings_from(fields: dict[str, Any], what: str = "serve settings",
                  root: str = "settings") -> ServeSettings:
    """`ServeSettings(**fields)` (GAN_SERVE_* variables fill the rest); what pydantic refuses is
    one InputError line naming every field at fault (`root` for the settings as a whole)."""
    try:
        return ServeSettings(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or root}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise InputError(f"invalid {what}: {problems}") from None
