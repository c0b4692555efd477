"""Request and response models of the HTTP API (then resolved by gan_serve.request, like the CLI).

Requests are strict, like the Python API: `true` is not the integer 1, "3" is not 3.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..errors import InputError
from ..outputs import DEFAULT_DURATION_MS
from ..projection import ProjectOptions
from ..request import DEFAULT_METHOD, DEFAULT_N, DEFAULT_PSI, DEFAULT_SEED, DEFAULT_STEPS, check_json_depth
from ..video import VideoOptions

VIDEO = VideoOptions()  # the defaults of the video fields

PROJECT_DEFAULTS = ProjectOptions()
PSI_NAMES = ("truncation", "truncation_psi", "psi")  # the CLI's --truncation/--truncation-psi/--psi
Psi = Field(DEFAULT_PSI, validation_alias=AliasChoices(*PSI_NAMES),
            description="Truncation psi in [0, 2]; 1 is off. Aliases: truncation_psi, psi.")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _one_psi(cls, data: Any) -> Any:  # any JSON
        try:
            check_json_depth(data)  # before pydantic walks it
        except InputError as exc:
            raise PydanticCustomError("json_depth", str(exc)) from None
        if isinstance(data, dict) and sum(k in data for k in PSI_NAMES) > 1:
            raise ValueError(f"give one of {', '.join(PSI_NAMES)} (they are the same field)")
        return data


class _Edited(_Request):
    edit: dict[str, float] | str | None = Field(
        None, description='Move every latent along directions: {"pc0": 2, "hair_blue": -1.5} or '
        '"pc0=+2,hair_blue=-1.5" (the CLI\'s --edit); a strength is in standard deviations of z.')
    directions: str | None = Field(None, max_length=256, description="The directions file an edit "
                                   "names, by stem (serve --directions); default: the only one.")


class _Video(_Request):  # a path's frames as a video (mp4, webm); None: VideoOptions' default
    fps: int | None = Field(None, description=f"Video frames per second, 1..120 (default {VIDEO.fps}).")
    quality: int | None = Field(None, description=f"Video CRF, 0..51, lower is better (default "
                                f"{VIDEO.quality}).")
    scale: int | None = Field(None, description=f"Enlarge video frames, nearest neighbour, "
                              f"1..8 (default {VIDEO.scale}).")
    repeat: int | None = Field(None, description=f"The frames this many times in the video, "
                               f"1..100 (default {VIDEO.repeat}).")


class GenerateRequest(_Edited):
    seed: int | None = Field(None, description="First seed; with n: seeds seed..seed+n-1. "
                              f"Default {DEFAULT_SEED}.")
    n: int | None = Field(None, description=f"Number of images (kept images with candidates). "
                          f"Default {DEFAULT_N}.")
    seeds: list[int] | str | None = Field(None, description='Explicit seeds: [3, 17] or "0-35,100".')
    latents: list[list[float]] | str | None = Field(
        None, description="Instead of seeds: a grid of these latents (N, z_dim), a list of lists or "
        "base64 of a .npy file (generate --latents-out, POST /project), truncated like seeds; the "
        "bytes of generate --latents. Layout grid only; no seed, n, seeds or candidates.")
    truncation: float = Psi
    format: Literal["png", "jpeg", "jpg", "webp"] = "png"
    layout: Literal["grid", "zip", "json", "npy"] = Field(
        "grid", description="grid: one image; zip: one file per seed; json: base64 images; npy: "
        "no images, the seeds' latents (edited, not truncated) as the .npy of generate "
        "--latents-out, for interpolate's latents.")
    nrow: int | None = Field(None, ge=1, description="Images per grid row (default ceil(sqrt(n))).")
    candidates: int | None = Field(None, description="Best-of-N: generate this many candidates "
                                   "(from seed, or seeds) and keep the n the server's "
                                   "discriminator (serve --rank-with) scores highest.")
    model: str | None = Field(None, max_length=256, description="A loaded model's name (GET /models); "
                              "default: the first one.")


class InterpolateRequest(_Edited, _Video):
    from_seed: int | None = Field(None, alias="from", description="Seed to start from (with to).")
    to_seed: int | None = Field(None, alias="to", description="Seed to end at (with from).")
    seeds: list[int] | str | None = Field(None, description='A path through seeds: [3, 17] or "3,17,42".')
    latents: list[list[float]] | str | None = Field(
        None, description="Key latents (K, z_dim): a list of lists, or base64 of a .npy file "
        "(what generate --latents-out saves). Give exactly one of from/to, seeds, latents.")
    steps: int = Field(DEFAULT_STEPS, description="Frames per segment, both ends included.")
    method: Literal["slerp", "lerp"] = DEFAULT_METHOD
    loop: bool = False
    truncation: float = Psi
    format: Literal["png", "jpeg", "jpg", "webp", "gif", "mp4", "webm"] = Field(
        "png", description="png/jpeg/webp: a strip (the default, like the CLI's); gif (or webp "
        "with animate): an animation; mp4 (H.264) or webm (VP9): a video (video/mp4, video/webm; "
        "the server needs the video extra).")
    animate: bool | None = Field(None, description="Default: true for gif, false otherwise.")
    duration_ms: int = Field(DEFAULT_DURATION_MS, description="Animation frame duration, 10..10000 ms.")
    nrow: int | None = Field(None, ge=1, description="Frames per strip row (default: all in one row).")
    model: str | None = Field(None, max_length=256, description="A loaded model's name (GET /models).")


class WalkBody(_Video):
    seed: int = Field(0, description="The seed to start from.")
    direction: str = Field(max_length=64, description="The direction to walk, e.g. pc0.")
    directions: str | None = Field(None, max_length=256, description="Directions file by stem "
                                   "(serve --directions); default: the only one.")
    steps: int = Field(9, description="Frames, both ends included.")
    range: list[float] = Field([-3.0, 3.0], description="Strengths of the first and last frames.")
    edit: dict[str, float] | str | None = Field(None, description="An edit made first (see generate).")
    truncation: float = Psi
    format: Literal["png", "jpeg", "jpg", "webp", "gif", "mp4", "webm"] = Field(
        "png", description="png/jpeg/webp: a strip; gif (or webp with animate): an animation; mp4 "
        "or webm: a video (the server needs the video extra).")
    animate: bool | None = Field(None, description="Default: true for gif, false otherwise.")
    duration_ms: int = Field(DEFAULT_DURATION_MS, description="Animation frame duration, 10..10000 ms.")
    nrow: int | None = Field(None, ge=1, description="Frames per strip row (default: all in one row).")
    model: str | None = Field(None, max_length=256, description="A loaded model's name (GET /models).")


class ImageItem(BaseModel):
    seed: int
    image: str = Field(description="base64 of the encoded file, provenance included")


class GenerateJSON(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="Model id: name@sha256 prefix")
    backend: str = Field(description='Where it ran, e.g. "torch/cpu/fp32"')
    seeds: list[int]
    truncation: float
    format: str
    images: list[ImageItem]
    provenance: dict[str, str] = Field(description="What the X-Gan-Serve-* headers of the other "
                                       "layouts say (gan_serve.seeds, .recipe, ...)")


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    model_id: str
    architecture: str
    z_dim: int
    img_resolution: int
    channels: int
    backend: str
    precision: str
    placeholder: bool
    video: bool = Field(description="POST /interpolate and /walk can answer mp4 and webm (the "
                        "server has the video extra)")


class DirectionScore(BaseModel):
    name: str = Field(description="What an edit calls it, e.g. pc0")
    score: float = Field(description="ganspace: the variance fraction it explains; "
                         "interfacegan: the accuracy of its boundary")


class DirectionsInfo(BaseModel):
    name: str = Field(description="The file's stem: the `directions` field of a request")
    directions_id: str = Field(description="name@sha256 prefix of the file, as provenance says")
    method: str = Field(description="ganspace (no labels) or interfacegan (labels)")
    z_dim: int = Field(description="The models it fits have this z_dim")
    directions: list[DirectionScore] = Field(description="In the file's order (ganspace: most "
                                             "variance first)")


class Readiness(BaseModel):
    ready: bool = Field(description="The models are loaded and warmed up (else the status is 503)")
    models: list[str] = Field(description="Names of the loaded models")


class ErrorBody(BaseModel):
    error: str


class ProjectRequest(_Request):
    image: str = Field(description="base64 of an image file (PNG, JPEG, WebP, GIF, ...) of any "
                       "size and mode: resized to the model's resolution and channels.")
    steps: int = Field(PROJECT_DEFAULTS.steps, description="Adam steps per start.")
    starts: int = Field(PROJECT_DEFAULTS.starts, description="Starts optimised: the best of the "
                        "screened seeds.")
    screen: int = Field(PROJECT_DEFAULTS.screen, description="Seeds scored before optimising.")
    seed: int = Field(PROJECT_DEFAULTS.seed, description="First screened seed.")
    features: bool = Field(False, description="Add the server's discriminator's features (serve "
                           "--rank-with) to the loss.")
    model: str | None = Field(None, max_length=256, description="A loaded model's name (GET /models).")


class ProjectJSON(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="Model id: name@sha256 prefix")
    backend: str = Field(description="Where the projection ran (torch: it needs gradients)")
    latent: list[float] = Field(description="The latent z (z_dim numbers)")
    latent_npy: str = Field(description="base64 of the latent as a .npy file (1, z_dim) float32: "
                            "what `gan-serve project` writes, for interpolate's latents")
    image: str = Field(description="base64 of the reconstruction (PNG, provenance included)")
    sheet: str = Field(description="base64 PNG: target | reconstruction | difference x4")
    psnr: float = Field(description="dB, reconstruction against the resized target")
    ssim: float
    loss: float
    start_seed: int = Field(description="The seed the winning start began from")
    provenance: dict[str, str] = Field(description="The PNG's text chunks")
