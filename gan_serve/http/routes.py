"""POST /generate and POST /interpolate: parse, call the Python API, format."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from .. import latents as lat
from .. import outputs as out
from ..errors import InputError
from ..images import ANIMATION_FORMATS, format_for
from .schemas import ErrorBody, GenerateJSON, GenerateRequest, ImageItem, InterpolateRequest
from .state import ServeState, get_state, require_key

State = Annotated[ServeState, Depends(get_state)]
ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 413, 422, 429, 503)}
router = APIRouter(tags=["images"], dependencies=[Depends(require_key)], responses=ERRORS)
IMAGE_RESPONSE = {200: {"content": {"image/png": {}, "application/zip": {}}}}


def _seeds(req: GenerateRequest, limit: int) -> list[int]:
    if req.seeds is not None:
        if req.seed is not None or req.n is not None:
            raise InputError("give either seeds or seed/n, not both")
        if isinstance(req.seeds, str):
            return lat.parse_seeds(req.seeds, limit)
        return lat.check_seeds(req.seeds, limit)
    return lat.seed_range(0 if req.seed is None else req.seed, 16 if req.n is None else req.n, limit)


def _headers(G: object, seeds: list[int], psi: float) -> dict[str, str]:
    return {"X-Seeds": lat.format_seeds(seeds), "X-Model": G.model_id,  # type: ignore[attr-defined]
            "X-Backend": G.backend, "X-Truncation": repr(psi)}  # type: ignore[attr-defined]


@router.post("/generate", responses=IMAGE_RESPONSE, response_model=None)
async def generate(req: GenerateRequest, state: State) -> Response | GenerateJSON:
    """Images of seeds: one grid, a zip of one file per seed, or JSON with base64 images."""
    G, batcher = state.model(req.model)
    seeds = _seeds(req, state.settings.max_n)
    psi = lat.check_psi(req.truncation)
    images = await state.run(batcher, lat.truncate(G.latents(seeds), psi))
    if req.layout == "grid":
        data = await asyncio.to_thread(out.grid_bytes, G, seeds, images, psi, req.nrow, req.format)
        return Response(data, media_type=f"image/{req.format}", headers=_headers(G, seeds, psi))
    files = await asyncio.to_thread(
        lambda: [out.single_bytes(G, s, im, psi, req.format) for s, im in zip(seeds, images, strict=True)])
    if req.layout == "json":
        items = [ImageItem(seed=s, image=base64.b64encode(f).decode())
                 for s, f in zip(seeds, files, strict=True)]
        return GenerateJSON(model=G.model_id, backend=G.backend, seeds=seeds, truncation=psi,
                            format=req.format, images=items)
    return Response(_zip(seeds, files, req.format), media_type="application/zip",
                    headers=_headers(G, seeds, psi))


def _zip(seeds: list[int], files: list[bytes], fmt: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # images are compressed already
        for s, data in zip(seeds, files, strict=True):
            info = zipfile.ZipInfo(out.seed_filename(s, fmt), date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, data)  # fixed timestamps: same request, same bytes
    return buf.getvalue()


@router.post("/interpolate", responses=IMAGE_RESPONSE, response_class=Response)
async def interpolate(req: InterpolateRequest, state: State) -> Response:
    """Frames along a slerp/lerp path through two or more seeds: a strip or an animation."""
    G, batcher = state.model(req.model)
    keys = lat.parse_seeds(req.seeds, 64) if isinstance(req.seeds, str) else lat.check_seeds(req.seeds, 64)
    if not 2 <= req.steps <= state.settings.max_steps:
        raise InputError(f"steps must be from 2 to {state.settings.max_steps} (endpoints included), "
                             f"got {req.steps}")
    animate = req.format == "gif" if req.animate is None else req.animate
    fmt = format_for(None, req.format, ANIMATION_FORMATS if animate else ("png", "jpeg", "webp"))
    psi = lat.check_psi(req.truncation)
    path = G.interpolation_latents(keys, None, req.steps, req.method, req.loop)
    lat.check_n(len(path), state.settings.max_n, what="the number of frames")
    frames = await state.run(batcher, lat.truncate(path, psi))
    data = await asyncio.to_thread(out.interpolation_bytes, G, keys, frames, psi, req.method,
                                   req.steps, req.loop, fmt, animate, None, req.duration_ms)
    return Response(data, media_type=f"image/{fmt}", headers=_headers(G, keys, psi))


naive_router = APIRouter(tags=["benchmark"], dependencies=[Depends(require_key)], responses=ERRORS)


@naive_router.post("/generate-naive", response_class=Response)
async def generate_naive(req: GenerateRequest, state: State) -> Response:
    """For benchmarks: one request = its own forward pass, no batching."""
    G, _ = state.model(req.model)
    seeds = _seeds(req, state.settings.max_n)
    psi = lat.check_psi(req.truncation)
    images = await asyncio.to_thread(G.generate, seeds, psi)
    data = await asyncio.to_thread(out.grid_bytes, G, seeds, images, psi, req.nrow, req.format)
    return Response(data, media_type=f"image/{req.format}", headers=_headers(G, seeds, psi))
