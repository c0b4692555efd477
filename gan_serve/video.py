"""Videos: any sequence of frames to an H.264 `.mp4` or a VP9 `.webm`, and back.

PyAV (the `video` extra) ships FFmpeg with libx264 and libvpx inside its wheels, so no system
ffmpeg is needed; it is imported only when a video is written or read. The colour conversion is
ours (numpy, BT.601 limited range, 4:2:0), so the bytes do not depend on FFmpeg's scaler, and the
encoders run single-threaded with bit-exact muxing: the same frames and options give the same
bytes on every call (the CLI and `POST /interpolate` answer the same file).

yuv420p stores colour once per 2x2 block. Frames are first enlarged `scale` times (nearest
neighbour; default 2, so each source pixel owns one colour sample), then an odd width or height is
padded by repeating the last column or row; `read_video` undoes both from the `frame_size` and
`scale` the file records.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .limits import DEFAULT_LIMITS

VIDEO_FORMATS = ("mp4", "webm")
MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}
CODECS = {"mp4": "libx264", "webm": "libvpx-vp9"}
# The largest side (after scaling and padding) each encoder is asked for: H.264's highest level
# (6.2) stops at 8,192; VP9's own limit is 65,536, WebP's 16,383 is kept as a sane bound.
MAX_SIDE = {"mp4": 8192, "webm": 16_384}
FPS = (1, 120)
QUALITY = (0, 51)  # CRF: 0 is lossless (H.264) or nearly so (VP9), 51 the worst x264 allows
SCALE = (1, 8)
REPEAT = (1, 100)
WHAT = "writing or reading a video (.mp4, .webm)"
# bit-exact muxing: no random Matroska segment id, no library version in the file; faststart:
# the mp4 index first, so a browser starts playing before the whole file has come
CONTAINER_OPTIONS = {"mp4": {"fflags": "+bitexact", "movflags": "+faststart"},
                     "webm": {"fflags": "+bitexact"}}
# BT.601 limited range, as the frames are converted below (and FFmpeg's default when untagged)
COLOUR_TAGS = {"colorspace": "smpte170m", "color_primaries": "smpte170m",
               "color_trc": "smpte170m", "color_range": "tv"}
# threads=1: x264's and libvpx's output depends on their thread count, which must not depend on
# the machine; row-mt off for the same reason. The presets are the fastest that keep quality 10
# >= 35 dB a frame (x264 veryfast: 2.4x faster than medium; libvpx realtime speed 8: 4x faster
# than good, 25% larger); BENCHMARKS.md "Videos".
ENCODER_OPTIONS = {"mp4": {"preset": "veryfast", "threads": "1"},
                   "webm": {"b": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1",
                            "row-mt": "0"}}


def _check_int(value: object, name: str, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InputError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class VideoOptions:
    """How frames become a video (CLI --fps/--quality/--scale/--repeat, the same HTTP fields)."""

    fps: int = 25  # frames per second
    quality: int = 10  # CRF, 0..51: lower is better and larger (10: >= 35 dB a frame, 64x64 avatars)
    scale: int = 2  # each pixel becomes scale x scale pixels (nearest neighbour)
    repeat: int = 1  # the whole sequence this many times, one after another (players loop too)

    def __post_init__(self) -> None:
        for name in ("fps", "quality", "scale", "repeat"):
            bounds = {"fps": FPS, "quality": QUALITY, "scale": SCALE, "repeat": REPEAT}[name]
            object.__setattr__(self, name, _check_int(getattr(self, name), name, bounds))

    def coded_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the encoded picture: scaled, then padded to even sides."""
        h, w = height * self.scale, width * self.scale
        return h + h % 2, w + w % 2

    def check_output(self, frames: int, height: int, width: int, fmt: str, max_pixels: int) -> None:
        """Before any frame is made: the encoded pixels of every frame written (repeats
        included) fit `max_pixels`, and `fmt` can encode the picture size."""
        if fmt not in VIDEO_FORMATS:
            raise InputError(f"unknown video format {fmt!r}; choose one of {', '.join(VIDEO_FORMATS)}")
        h, w = self.coded_size(height, width)
        if max(h, w) > MAX_SIDE[fmt]:
            raise InputError(f"each video frame would be {w:,}x{h:,} pixels; {fmt} allows at most "
                             f"{MAX_SIDE[fmt]:,} a side (use a smaller scale)")
        total = frames * self.repeat
        if total * h * w > max_pixels:
            raise InputError(f"{total:,} video frames of {w}x{h} would be {total * h * w:,} pixels; "
                             f"the output budget is {max_pixels:,} pixels per request (use fewer "
                             "frames, a smaller repeat or scale)")

    def provenance(self) -> dict[str, str]:
        """The keys a video adds to its request's provenance (file comment and HTTP headers)."""
        return {f"gan_serve.{k}": str(getattr(self, k)) for k in ("fps", "quality", "scale", "repeat")}


def video_options(fmt: str | None, animate: bool | None = None,
                  **fields: int | None) -> VideoOptions | None:
    """The options of a video output (`fields` left None take their defaults), or None when `fmt`
    is not a video format; video fields with another format, and a video as a strip, are refused."""
    given = {k: v for k, v in fields.items() if v is not None}
    if fmt not in VIDEO_FORMATS:
        if given:
            raise InputError(f"{', '.join(sorted(given))}: only for videos (.mp4, .webm), not "
                             f"{fmt or 'this format'}")
        return None
    if animate is False:
        raise InputError(f"{fmt} is a video, never a strip; a strip is png, jpeg or webp")
    return VideoOptions(**given)


def require_video() -> None:
    """The one-line missing-extra error unless PyAV is installed (checked before any work)."""
    from .extras import require

    require("video", WHAT, "av")


def _av() -> Any:
    require_video()
    import av

    return av


def to_yuv420p(frame: np.ndarray, scale: int = 1) -> np.ndarray:
    """One HWC uint8 frame (C = 1 or 3) as yuv420p planes stacked in one (3H'/2, W') uint8 array,
    where H', W' are the sides enlarged `scale` times (nearest neighbour), then padded to even by
    repeating the last row/column: BT.601 limited range, each colour sample the mean of its 2x2
    block."""
    rgb = np.asarray(frame)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (1, 3):
        raise InputError(f"video frames must be (H, W, 1) or (H, W, 3) uint8, got {rgb.dtype} "
                         f"{rgb.shape}")
    r, g, b = (rgb[..., min(i, rgb.shape[2] - 1)].astype(np.float32) for i in range(3))
    # at the source size: the conversion is per pixel, so it commutes with the enlargement
    ycc = np.stack([16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255,
                    128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255,
                    128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255])
    if scale % 2 == 0:  # every 2x2 block lies in one source pixel: its mean is that pixel
        y = _enlarge(_quantize(ycc[0]), scale)
        colour = _enlarge(_quantize(ycc[1:]), scale // 2)
    else:
        big = _enlarge(ycc, scale)
        big = np.pad(big, ((0, 0), (0, big.shape[1] % 2), (0, big.shape[2] % 2)), mode="edge")
        h, w = big.shape[1:]
        y = _quantize(big[0])
        colour = _quantize(big[1:].reshape(2, h // 2, 2, w // 2, 2).mean(axis=(2, 4)))
    # the planes one after another, as yuv420p lays them out, shaped (3 * H / 2, W)
    return np.concatenate([y.ravel(), colour.ravel()]).reshape(-1, y.shape[1])


def _enlarge(planes: np.ndarray, k: int) -> np.ndarray:
    """(..., H, W) -> (..., kH, kW), nearest neighbour."""
    return planes if k == 1 else planes.repeat(k, axis=-2).repeat(k, axis=-1)


def _quantize(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _text(metadata: Mapping[str, object] | None) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}


def encode_video(frames: Sequence[np.ndarray], fmt: str = "mp4",
                 options: VideoOptions | None = None,
                 metadata: Mapping[str, object] | None = None) -> bytes:
    """Encode frames (a (T, H, W, C) uint8 array or any sequence of HWC frames of one size) as an
    H.264 .mp4 or VP9 .webm, yuv420p. `metadata` (a provenance) goes, as JSON, into the file's
    comment tag with the options and the frame size; the title says gan-serve."""
    options = options or VideoOptions()
    if len(frames) < 1:
        raise InputError("a video needs at least one frame")
    height, width = np.shape(frames[0])[:2]
    options.check_output(len(frames), height, width, fmt, DEFAULT_LIMITS.max_pixels)
    av = _av()
    text = {**_text(metadata), **options.provenance(), "gan_serve.frame_size": f"{width}x{height}"}
    coded_h, coded_w = options.coded_size(height, width)
    with tempfile.TemporaryDirectory(prefix="gan-serve-video-") as tmp:
        # a file, not a BytesIO: the mp4 muxer re-reads it to put the index first (faststart)
        path = Path(tmp) / f"video.{fmt}"
        with av.open(str(path), "w", format=fmt, options=CONTAINER_OPTIONS[fmt]) as container:
            container.metadata["title"] = "gan-serve"
            container.metadata["comment"] = json.dumps(text, sort_keys=True)
            stream = container.add_stream(CODECS[fmt], rate=options.fps)
            stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, "yuv420p"
            stream.codec_context.time_base = Fraction(1, options.fps)
            stream.options = {**ENCODER_OPTIONS[fmt], **COLOUR_TAGS, "crf": str(options.quality)}
            _write_frames(av, container, stream, frames, options, (height, width))
        return path.read_bytes()


def _write_frames(av: Any, container: Any, stream: Any, frames: Sequence[np.ndarray],
                  options: VideoOptions, size: tuple[int, int]) -> None:
    pts = 0
    for _ in range(options.repeat):
        for frame in frames:
            if np.shape(frame)[:2] != size:
                raise InputError(f"every video frame must be {size[1]}x{size[0]}, got "
                                 f"{np.shape(frame)[1]}x{np.shape(frame)[0]}")
            picture = av.VideoFrame.from_ndarray(to_yuv420p(frame, options.scale), format="yuv420p")
            picture.pts = pts
            pts += 1
            container.mux(stream.encode(picture))
    container.mux(stream.encode(None))  # flush the encoder's delayed frames


def read_video(data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    """Decode a video written by encode_video: frames (T, H, W, 3) uint8 at the source size (the
    padding cropped, the scale undone by 2x2.. block means) and the provenance of its comment."""
    import io

    av = _av()
    with av.open(io.BytesIO(data)) as container:
        tags = {k.lower(): v for k, v in container.metadata.items()}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    meta = json.loads(tags.get("comment", "{}"))
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8), meta
    width, height = (int(v) for v in meta.get("gan_serve.frame_size", "0x0").split("x"))
    scale = int(meta.get("gan_serve.scale", "1"))
    video = np.stack(frames)
    if not height:  # not ours: the decoded frames as they are
        return video, meta
    video = video[:, :height * scale, :width * scale]
    if scale > 1:
        n = len(video)
        blocks = video.reshape(n, height, scale, width, scale, 3).astype(np.float32)
        video = np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)
    return video, meta
