"""Request and response models of the HTTP API (validated again by gan_serve.latents).

Requests are strict, like the Python API: `true` is not the integer 1, "3" is not 3.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    seed: int | None = Field(None, description="First seed; with n: seeds seed..seed+n-1. Default 0.")
    n: int | None = Field(None, description="Number of images. Default 16.")
    seeds: list[int] | str | None = Field(None, description='Explicit seeds: [3, 17] or "0-35,100".')
    truncation: float = Field(1.0, description="Truncation psi in [0, 2]; 1 is off.")
    format: Literal["png", "jpeg", "webp"] = "png"
    layout: Literal["grid", "zip", "json"] = Field(
        "grid", description="grid: one image; zip: one file per seed; json: base64 images.")
    nrow: int | None = Field(None, ge=1, description="Images per grid row (default ceil(sqrt(n))).")
    model: str | None = Field(None, max_length=256, description="A loaded model's name (GET /models); "
                              "default: the first one.")


class InterpolateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    seeds: list[int] | str = Field(..., description='Two or more seeds: [3, 17] or "3,17,42".')
    steps: int = Field(16, description="Frames per segment, both ends included.")
    method: Literal["slerp", "lerp"] = "slerp"
    loop: bool = False
    truncation: float = 1.0
    format: Literal["png", "jpeg", "webp", "gif"] = Field(
        "gif", description="png/jpeg/webp: a strip; gif (or webp with animate): an animation.")
    animate: bool | None = Field(None, description="Default: true for gif, false otherwise.")
    duration_ms: int = Field(80, description="Animation frame duration, 10..10000 ms.")
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


class ErrorBody(BaseModel):
    error: str
