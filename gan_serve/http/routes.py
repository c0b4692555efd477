"""POST /generate, POST /interpolate and POST /project: parse into a gan_serve.request, run it, format.

The bytes and the X-* headers come from gan_serve.outputs and the request's provenance, the
same functions and values the CLI writes files with, so the same request gives the same bytes
from both.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import time
import zipfile
from collections.abc import Callable

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import JSONResponse

from .. import outputs as out
from ..directions import LatentEdit
from ..errors import InputError
from ..generator import Generator
from ..images import ANIMATION_FORMATS, IMAGE_FORMATS, format_for, to_uint8
from ..request import (
    EDIT_ALONE,
    LatentsRequest,
    Limits,
    PathRequest,
    SeedRequest,
    WalkRequest,
    decode_latents,
)
from ..video import MEDIA_TYPES, VIDEO_FORMATS, require_video, video_options
from .admission import seated
from .batcher import Batcher, LazyLatents
from .schemas import (
    ErrorBody,
    GenerateJSON,
    GenerateRequest,
    ImageItem,
    InterpolateRequest,
    ProjectJSON,
    ProjectRequest,
    WalkBody,
)
from .state import KeyFirstRoute, ServeState, State, require_key

ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 408, 413, 422, 429, 503)}


def binary(*media_types: str) -> dict[str, dict]:
    """OpenAPI content for files: a generated client reads them as bytes, never as JSON."""
    return {media: {"schema": {"type": "string", "format": "binary"}} for media in media_types}


STILLS = tuple(f"image/{f}" for f in ("png", "jpeg", "webp"))
# The binary types come first: a generator that takes one type per status (openapi-python-client
# takes the first it supports) then reads files as bytes. layout=json is its own content, after them.
GENERATE_RESPONSE = {200: {"description": "layout grid: the image; zip: a zip of one file per seed; "
                           "npy: the seeds' latents (application/octet-stream); "
                           "json: base64 images (application/json).",
                           "content": binary(*STILLS, "application/zip", "application/octet-stream"),
                           "model": GenerateJSON}}  # FastAPI adds it as application/json, last
INTERPOLATE_RESPONSE = {200: {"description": "The strip, the animation (gif, or webp with animate) "
                              "or the video (mp4, webm).",
                              "content": binary(*STILLS, "image/gif", *MEDIA_TYPES.values())}}
NAIVE_RESPONSE = {200: {"description": "The grid.", "content": binary(*STILLS)}}
router = APIRouter(tags=["images"], dependencies=[Depends(require_key)], responses=ERRORS,
                   route_class=KeyFirstRoute)
naive_router = APIRouter(tags=["benchmark"], dependencies=[Depends(require_key)], responses=ERRORS,
                         route_class=KeyFirstRoute)


def seed_request(body: GenerateRequest, limits: Limits, edit: LatentEdit | None = None) -> SeedRequest:
    """The body as a SeedRequest (the CLI's rules: seeds xor seed/n, defaults 0 and 16)."""
    return SeedRequest.parse(seed=body.seed, n=body.n, seeds=body.seeds, truncation_psi=body.truncation,
                             candidates=body.candidates, limits=limits, edit=edit)


def _zip(seeds: list[int], files: list[bytes], fmt: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # the images are compressed already
        for s, data in zip(seeds, files, strict=True):
            # a fixed timestamp: the same request gives the same bytes
            zf.writestr(zipfile.ZipInfo(out.seed_filename(s, fmt), date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _singles(G: Generator, seeds: list[int], images: np.ndarray, psi: float, fmt: str) -> list[bytes]:
    encode = out.single_encoder(G, psi, fmt)  # the shared provenance rendered once per request
    return [encode(s, im) for s, im in zip(seeds, images, strict=True)]


async def _images(state: ServeState, batcher: Batcher, G: Generator,
                  req: SeedRequest | PathRequest | WalkRequest | LatentsRequest) -> np.ndarray:
    """The request's images through the model's batcher; its latents are built on the model's
    thread, just before its forward pass."""
    with batcher.admit(len(req)) as seat:  # 429 before any work for this request
        seated()  # the queue counts this request's images now
        return await state.run(batcher, LazyLatents(len(req), functools.partial(req.latents, G.z_dim)),
                               seat)


async def _frames(state: ServeState, batcher: Batcher, G: Generator, req: PathRequest | WalkRequest,
                  body: InterpolateRequest | WalkBody) -> Response:
    """A path's frames as the body's strip, animation or video."""
    video = video_options(body.format, body.animate, fps=body.fps, quality=body.quality,
                          scale=body.scale, repeat=body.repeat)
    animate = body.format == "gif" if body.animate is None else body.animate
    allowed = VIDEO_FORMATS if video else ANIMATION_FORMATS if animate else IMAGE_FORMATS
    fmt = format_for(None, body.format, allowed)
    req.check_output(G, fmt, animate, body.nrow, body.duration_ms, video)  # before any work
    if video:
        require_video()
    frames = await _images(state, batcher, G, req)
    meta = req.provenance(G)
    data = await state.encode(out.path_file, frames, fmt, animate, meta, body.nrow, body.duration_ms,
                              video)
    media = MEDIA_TYPES[fmt] if video else f"image/{fmt}"
    return Response(data, media_type=media, headers=out.headers(meta | (video.provenance() if video else {})))


async def _latents_grid(state: ServeState, batcher: Batcher, G: Generator, body: GenerateRequest,
                        edit: LatentEdit | None) -> Response:
    """`latents`: a grid of the given latents, the bytes of `generate --latents`."""
    given = [k for k in ("seed", "n", "seeds", "candidates") if getattr(body, k) is not None]
    if body.layout != "grid":
        given.append(f"layout {body.layout}")
    if given:
        raise InputError(f"latents draws a grid of the given latents: it takes no {', '.join(given)}")
    req = LatentsRequest(decode_latents(body.latents), body.truncation, state.limits, edit)
    fmt = format_for(None, body.format, IMAGE_FORMATS)
    req.check_output(G, fmt, body.nrow)  # the output budget: 422 before any work
    images = await _images(state, batcher, G, req)
    meta = req.provenance(G)
    data = await state.encode(out.grid_file, images, body.nrow, fmt, meta)
    return Response(data, media_type=f"image/{fmt}", headers=out.headers(meta))


@router.post("/generate", responses=GENERATE_RESPONSE, response_class=Response)
async def generate(body: GenerateRequest, state: State) -> Response:
    """Images of seeds: one grid, a zip of one file per seed, or JSON with base64 images.
    With `candidates`: the best `n` of that many, ranked by the server's discriminator."""
    G, batcher = state.model(body.model)
    edit = state.edit(body.directions, body.edit)
    if edit is not None and body.layout in ("zip", "json"):  # a file per seed carries no edit
        raise InputError(EDIT_ALONE.format(what=f"layout {body.layout}"))
    if body.latents is not None:
        return await _latents_grid(state, batcher, G, body, edit)
    req = seed_request(body, state.limits, edit)
    if body.layout == "npy":
        return _latents(G, req)
    fmt = format_for(None, body.format, IMAGE_FORMATS)
    req.check_output(G, fmt, body.nrow, grid=body.layout == "grid")  # the output budget: 422
    D = state.discriminator(G) if req.keep is not None else None  # 422 before any work
    images = await _images(state, batcher, G, req)
    seeds = list(req.seeds)
    if D is not None:
        from ..discriminator import rank_images  # torch: only servers started with --rank-with

        seeds, _, images = await asyncio.to_thread(rank_images, D, seeds, images, req.keep,
                                                   G.spec.output_range)
    meta = req.provenance(G, seeds)
    if body.layout == "grid":
        data = await state.encode(out.grid_file, images, body.nrow, fmt, meta)
        return Response(data, media_type=f"image/{fmt}", headers=out.headers(meta))
    files = await state.encode(_singles, G, seeds, images, req.truncation_psi, fmt)
    if body.layout == "zip":
        return Response(_zip(seeds, files, fmt), media_type="application/zip", headers=out.headers(meta))
    body_json = GenerateJSON(model=G.model_id, backend=G.backend, seeds=seeds,
                             truncation=req.truncation_psi, format=fmt, provenance=meta,
                             images=[ImageItem(seed=s, image=base64.b64encode(f).decode())
                                     for s, f in zip(seeds, files, strict=True)])
    return JSONResponse(body_json.model_dump(mode="json"))


def _latents(G: Generator, req: SeedRequest) -> Response:
    """The seeds' latents as generate --latents-out writes them: no forward pass, no ranking."""
    if req.keep is not None:
        raise InputError("layout npy: candidates are ranked by their images; ask for the kept "
                         "seeds' latents by their seeds")
    z = G.latents(list(req.seeds))  # as the CLI saves them: before truncation, after an edit
    data = out.latents_file(z if req.edit is None else req.edit.apply(z))
    return Response(data, media_type="application/octet-stream",
                    headers=out.headers(req.provenance(G)))


@router.post("/interpolate", responses=INTERPOLATE_RESPONSE, response_class=Response)
async def interpolate(body: InterpolateRequest, state: State) -> Response:
    """Frames along a slerp/lerp path through seeds (from/to, or seeds) or key latents: a strip
    (default, png) or an animation (gif, or webp with animate)."""
    G, batcher = state.model(body.model)
    req = PathRequest.parse(
        from_seed=body.from_seed, to_seed=body.to_seed, seeds=body.seeds,
        latents=None if body.latents is None else decode_latents(body.latents), steps=body.steps,
        method=body.method, loop=body.loop, truncation_psi=body.truncation, limits=state.limits,
        edit=state.edit(body.directions, body.edit))
    return await _frames(state, batcher, G, req, body)


@router.post("/walk", responses=INTERPOLATE_RESPONSE, response_class=Response)
async def walk(body: WalkBody, state: State) -> Response:
    """One seed moved along one direction of a served directions file: a strip (default, png)
    or an animation (gif, or webp with animate), the bytes of `gan-serve walk`."""
    G, batcher = state.model(body.model)
    dirs = state.named_directions(body.directions)
    edit = None if body.edit is None else dirs.edit(body.edit)
    req = WalkRequest(body.seed, body.direction, dirs, body.steps, tuple(body.range),
                      body.truncation, state.limits, edit)
    return await _frames(state, batcher, G, req, body)


@router.post("/project", response_model=ProjectJSON)
async def project(body: ProjectRequest, state: State) -> ProjectJSON:
    """The latent whose image is closest to an uploaded image (base64 in JSON), its
    reconstruction and a sheet. One projection runs at a time (another gets 429); one that
    outlasts the request timeout stops and answers 503."""
    from ..projection import ProjectOptions
    from ..projection import project as run_projection

    G, _ = state.model(body.model)
    options = ProjectOptions(steps=body.steps, starts=body.starts, screen=body.screen, seed=body.seed)
    try:
        data = base64.b64decode(body.image, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise InputError("image: not base64 of an image file") from None
    D = state.discriminator(G) if body.features else None
    if state.projecting.locked():
        raise HTTPException(429, "a projection is running; retry when it is done",
                            headers={"Retry-After": "5"})
    async with state.projecting:
        twin = await asyncio.to_thread(_differentiable, G)  # the bundled model's checkpoint: a load
        result = await asyncio.to_thread(run_projection, twin, [data], options, discriminator=D,
                                         progress=_deadline(state.settings.request_timeout_s))
    files = result.files(0)
    return ProjectJSON(model=twin.model_id, backend=twin.backend, latent=result.latents[0].tolist(),
                       latent_npy=base64.b64encode(files[".npy"]).decode(),
                       image=base64.b64encode(files[".png"]).decode(),
                       sheet=base64.b64encode(files["-sheet.png"]).decode(),
                       psnr=float(result.psnr[0]), ssim=float(result.ssim[0]),
                       loss=float(result.loss[0]), start_seed=result.start_seeds[0],
                       provenance=result.provenance(0))


@functools.cache
def _differentiable(G: Generator) -> Generator:
    """projection.differentiable, loaded once per served model (a failure is not cached)."""
    from ..projection import differentiable

    return differentiable(G)


def _deadline(seconds: float) -> Callable[[int], None]:
    """A progress callback that stops a projection (HTTP 503) once `seconds` have passed."""
    end = time.monotonic() + seconds

    def check(_: int) -> None:
        if time.monotonic() > end:
            raise HTTPException(503, f"the projection did not finish within the server's request "
                                f"timeout ({seconds:g} s); ask for fewer steps or starts")

    return check


@naive_router.post("/generate-naive", responses=NAIVE_RESPONSE, response_class=Response)
async def generate_naive(req: GenerateRequest, state: State) -> Response:
    """For benchmarks only: what a user's own endpoint does. Each request runs its own forward
    pass in a thread (torch eager fp32 on exactly its latents: no batching, no queue, no fixed
    micro-batch), then encodes its image there."""
    G, _ = state.model(req.model)
    request = seed_request(req, state.limits)
    fmt = format_for(None, req.format, IMAGE_FORMATS)
    request.check_output(G, fmt, req.nrow, grid=True)
    meta = request.provenance(G)
    data = await asyncio.to_thread(_naive_grid, G, request, req.nrow, fmt, meta)
    return Response(data, media_type=f"image/{fmt}", headers=out.headers(meta))


def _naive_grid(G: Generator, req: SeedRequest, nrow: int | None, fmt: str, meta: dict[str, str]) -> bytes:
    y = _naive_forward(G)(req.latents(G.z_dim))
    return out.grid_file(to_uint8(y, G.spec.output_range), nrow, fmt, meta)


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
