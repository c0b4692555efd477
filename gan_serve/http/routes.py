"""POST /generate and POST /interpolate: parse, call the Python API, format.

The bytes come from gan_serve.outputs, the same functions the CLI writes files with, so the
same request gives the same bytes from both.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import zipfile
from collections.abc import Callable

import numpy as np
from fastapi import APIRouter, Depends, Response

from .. import latents as lat
from .. import outputs as out
from ..errors import InputError
from ..generator import Generator
from ..images import ANIMATION_FORMATS, IMAGE_FORMATS, format_for, to_uint8
from .batcher import LazyLatents
from .schemas import ErrorBody, GenerateJSON, GenerateRequest, ImageItem, InterpolateRequest
from .state import KeyFirstRoute, State, require_key

ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 408, 413, 422, 429, 503)}
IMAGE_RESPONSE = {200: {"content": {f"image/{f}": {} for f in ("png", "jpeg", "webp", "gif")}
                        | {"application/zip": {}}, "description": "The image, zip or JSON."}}
router = APIRouter(tags=["images"], dependencies=[Depends(require_key)], responses=ERRORS,
                   route_class=KeyFirstRoute)
naive_router = APIRouter(tags=["benchmark"], dependencies=[Depends(require_key)], responses=ERRORS,
                         route_class=KeyFirstRoute)


def request_seeds(req: GenerateRequest, limit: int) -> list[int]:
    """`seeds` (a list or "0-35,100"), else `seed` + `n` (defaults 0 and 16, like the CLI)."""
    if req.seeds is not None:
        if req.seed is not None or req.n is not None:
            raise InputError("give either seeds or seed/n, not both (seeds says how many)")
        if isinstance(req.seeds, str):
            return lat.parse_seeds(req.seeds, limit)
        return lat.check_seeds(req.seeds, limit)
    return lat.seed_range(0 if req.seed is None else req.seed, 16 if req.n is None else req.n, limit)


def provenance_headers(G: Generator, seeds: list[int], psi: float) -> dict[str, str]:
    """What the PNG text chunks say, for every response format."""
    return {"X-Seeds": lat.format_seeds(seeds), "X-Model": G.model_id, "X-Backend": G.backend,
            "X-Truncation": repr(psi)}


def _zip(seeds: list[int], files: list[bytes], fmt: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # the images are compressed already
        for s, data in zip(seeds, files, strict=True):
            # a fixed timestamp: the same request gives the same bytes
            zf.writestr(zipfile.ZipInfo(out.seed_filename(s, fmt), date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _latents(G: Generator, seeds: list[int], psi: float) -> np.ndarray:
    return lat.truncate(G.latents(seeds), psi)


def _path(G: Generator, keys: list[int], steps: int, method: str, loop: bool, psi: float) -> np.ndarray:
    return lat.truncate(G.interpolation_latents(keys, None, steps, method, loop), psi)


def _singles(G: Generator, seeds: list[int], images: object, psi: float, fmt: str) -> list[bytes]:
    return [out.single_bytes(G, s, im, psi, fmt) for s, im in zip(seeds, images, strict=True)]


@router.post("/generate", responses=IMAGE_RESPONSE, response_model=GenerateJSON)
async def generate(req: GenerateRequest, state: State) -> Response | GenerateJSON:
    """Images of seeds: one grid, a zip of one file per seed, or JSON with base64 images."""
    G, batcher = state.model(req.model)
    seeds = request_seeds(req, state.settings.max_n)
    psi = lat.check_psi(req.truncation)
    with batcher.admit(len(seeds)) as seat:  # 429 before any work for this request
        # the latents are built on the model's thread, just before its forward pass
        z = LazyLatents(len(seeds), functools.partial(_latents, G, seeds, psi))
        images = await state.run(batcher, z, seat)
    headers = provenance_headers(G, seeds, psi)
    if req.layout == "grid":
        data = await state.encode(out.grid_bytes, G, seeds, images, psi, req.nrow, req.format)
        return Response(data, media_type=f"image/{req.format}", headers=headers)
    files = await state.encode(_singles, G, seeds, images, psi, req.format)
    if req.layout == "zip":
        return Response(_zip(seeds, files, req.format), media_type="application/zip", headers=headers)
    return GenerateJSON(model=G.model_id, backend=G.backend, seeds=seeds,
                        truncation=psi, format=req.format,
                        images=[ImageItem(seed=s, image=base64.b64encode(f).decode())
                                for s, f in zip(seeds, files, strict=True)])


@router.post("/interpolate", responses=IMAGE_RESPONSE, response_class=Response)
async def interpolate(req: InterpolateRequest, state: State) -> Response:
    """Frames along a slerp/lerp path through two or more seeds: a strip or an animation."""
    G, batcher = state.model(req.model)
    limit = state.settings.max_keys
    if isinstance(req.seeds, str):
        keys = lat.parse_seeds(req.seeds, limit)
    else:
        keys = lat.check_seeds(req.seeds, limit)
    if not 2 <= req.steps <= state.settings.max_steps:  # lat.check_steps' rule, this server's limit
        raise InputError(f"steps must be from 2 to {state.settings.max_steps} (endpoints included), "
                         f"got {req.steps}")
    animate = req.format == "gif" if req.animate is None else req.animate
    fmt = format_for(None, req.format, ANIMATION_FORMATS if animate else IMAGE_FORMATS)
    psi = lat.check_psi(req.truncation)
    count = lat.check_frames(len(keys), req.steps, req.loop, state.settings.max_n)
    with batcher.admit(count) as seat:
        path = LazyLatents(count, functools.partial(_path, G, keys, req.steps, req.method, req.loop, psi))
        frames = await state.run(batcher, path, seat)
    data = await state.encode(out.interpolation_bytes, G, keys, frames, psi, req.method,
                              req.steps, req.loop, fmt, animate, None, req.duration_ms)
    return Response(data, media_type=f"image/{fmt}", headers=provenance_headers(G, keys, psi))


@naive_router.post("/generate-naive", response_class=Response)
async def generate_naive(req: GenerateRequest, state: State) -> Response:
    """For benchmarks only: what a user's own endpoint does. Each request runs its own forward
    pass in a thread (torch eager fp32 on exactly its latents: no batching, no queue, no fixed
    micro-batch), then encodes its image there."""
    G, _ = state.model(req.model)
    seeds = request_seeds(req, state.settings.max_n)
    psi = lat.check_psi(req.truncation)
    data = await asyncio.to_thread(_naive_grid, G, seeds, psi, req.nrow, req.format)
    return Response(data, media_type=f"image/{req.format}", headers=provenance_headers(G, seeds, psi))


def _naive_grid(G: Generator, seeds: list[int], psi: float, nrow: int | None, fmt: str) -> bytes:
    z = lat.truncate(G.latents(seeds), psi)
    y = _naive_forward(G)(z)
    return out.grid_bytes(G, seeds, to_uint8(y, G.spec.output_range), psi, nrow, fmt)


@functools.cache
def _naive_forward(G: Generator) -> Callable[[np.ndarray], np.ndarray]:
    """z (N, z_dim) -> outputs (N, C, H, W): an fp32 eager copy of a torch model, else the
    model's runner itself, called on the whole batch as it comes."""
    if G.runner.kind != "torch":
        return G.runner.run
    import copy

    import torch

    module = copy.deepcopy(G.module).float().cpu().eval()

    @torch.no_grad()
    def forward(z: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(z)
        return module(x).numpy()

    return forward
