"""Videos (gan_serve.video, `interpolate -o x.mp4|x.webm`): decoded back with PyAV, each frame
matches the PNG frame; odd sizes are padded and cropped back; the bytes are the same on every run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
from typer.testing import CliRunner

import gan_serve
from gan_serve.commands.cli import app
from gan_serve.errors import InputError
from gan_serve.request import Limits, PathRequest
from gan_serve.video import VideoOptions, encode_video, read_video, to_yuv420p, video_options
from tests.gan_serve.one_line import one_line_exit_2
from tests.gan_serve.test_extras import one_line_naming, run_without

FORMATS = ("mp4", "webm")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """A real interpolation of the bundled model: 24 frames, 64x64 RGB."""
    return gan_serve.load().interpolate([3, 17, 42], steps=12)[:24]


def ramp(height: int, width: int, n: int = 6, channels: int = 3) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, channels))
    return np.stack([np.clip(x * (0.5 + t / (2 * n)) + 4 * t, 0, 255) for t in range(n)]).astype(np.uint8)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_decoded_frame_is_within_35_db_of_its_png_frame(frames, fmt):
    data = encode_video(frames, fmt)  # the defaults: quality 10, scale 2
    decoded, meta = read_video(data)
    assert decoded.shape == frames.shape
    worst = min(psnr(d, f) for d, f in zip(decoded, frames, strict=True))
    assert worst >= 35, worst
    with av.open(__import__("io").BytesIO(data)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == {"mp4": "h264", "webm": "vp9"}[fmt]
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (128, 128)  # scale 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_file_carries_the_provenance_in_its_comment_and_title(frames, fmt):
    G = gan_serve.load()
    meta = PathRequest(keys=(3, 17), steps=4).provenance(G)
    _, back = read_video(encode_video(frames[:4], fmt, VideoOptions(fps=10), meta))
    assert back == {**meta, "gan_serve.fps": "10", "gan_serve.quality": "10", "gan_serve.scale": "2",
                    "gan_serve.repeat": "1", "gan_serve.frame_size": "64x64"}
    with av.open(__import__("io").BytesIO(encode_video(frames[:2], fmt, metadata=meta))) as c:
        tags = {k.lower(): v for k, v in c.metadata.items()}
        assert tags["title"] == "gan-serve" and json.loads(tags["comment"])["gan_serve.seeds"] == "3,17"
        assert c.streams.video[0].average_rate == 25


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("height", "width", "channels"), [(9, 7, 3), (33, 30, 1), (6, 5, 3)])
def test_odd_sizes_are_padded_to_even_and_cropped_back(fmt, height, width, channels):
    clip = ramp(height, width, channels=channels)
    data = encode_video(clip, fmt, VideoOptions(scale=1, quality=4))
    with av.open(__import__("io").BytesIO(data)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.width, ctx.height) == (width + width % 2, height + height % 2)
    decoded, _ = read_video(data)
    want = clip if channels == 3 else np.repeat(clip, 3, axis=3)
    assert decoded.shape == want.shape
    assert min(psnr(d, f) for d, f in zip(decoded, want, strict=True)) >= 35


def test_padding_repeats_the_last_row_and_column():
    frame = ramp(3, 5, n=1)[0]
    planes = to_yuv420p(frame)  # 4x6 luma, then 2x3 Cb and Cr: (4 + 2 * 6 / 6, 6) rows
    assert planes.shape == (6, 6)
    y = planes[:4]
    assert np.array_equal(y[3], y[2]) and np.array_equal(y[:, 5], y[:, 4])


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_same_frames_give_the_same_bytes_here_and_in_a_fresh_process(frames, fmt, tmp_path):
    clip = frames[:6]
    data = encode_video(clip, fmt, metadata={"gan_serve.seeds": "3,17"})
    assert encode_video(list(clip), fmt, metadata={"gan_serve.seeds": "3,17"}) == data
    np.save(tmp_path / "clip.npy", clip)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from gan_serve.video import encode_video
        clip = np.load({str(tmp_path / 'clip.npy')!r})
        sys.stdout.buffer.write(encode_video(clip, {fmt!r}, metadata={{"gan_serve.seeds": "3,17"}}))
    """)
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=120)
    assert fresh.stdout == data


@pytest.mark.parametrize("fmt", FORMATS)
def test_repeat_plays_the_sequence_again_and_any_sequence_of_frames_works(fmt):
    walk = list(ramp(16, 16, n=5))  # e.g. a direction walk: a list, not an array
    decoded, meta = read_video(encode_video(walk, fmt, VideoOptions(repeat=3, scale=1, quality=0)))
    assert len(decoded) == 15 and meta["gan_serve.repeat"] == "3"
    assert psnr(decoded[5], walk[0]) >= 35 and psnr(decoded[14], walk[4]) >= 35


@pytest.mark.parametrize(("fields", "match"), [
    ({"fps": 0}, "fps must be an integer from 1 to 120, got 0"),
    ({"quality": 52}, "quality must be an integer from 0 to 51"),
    ({"quality": -1}, "quality must be an integer from 0 to 51"),
    ({"scale": 9}, "scale must be an integer from 1 to 8"),
    ({"repeat": 0}, "repeat must be an integer from 1 to 100"),
    ({"fps": 2.5}, "fps must be an integer"),
    ({"fps": True}, "fps must be an integer"),
])
def test_bad_options_are_refused(fields, match):
    with pytest.raises(InputError, match=match):
        VideoOptions(**fields)


def test_video_fields_go_with_video_formats_only():
    assert video_options("png") is None
    assert video_options("mp4", fps=None) == VideoOptions()
    with pytest.raises(InputError, match="fps: only for videos"):
        video_options("gif", fps=10)
    with pytest.raises(InputError, match="never a strip"):
        video_options("webm", animate=False)


def test_the_output_budget_counts_every_frame_written_scaled_and_repeated():
    limits = Limits(max_pixels=100 * 128 * 128)
    VideoOptions().check_output(100, 64, 64, "mp4", limits.max_pixels)  # 100 frames of 128x128
    with pytest.raises(InputError, match="101 video frames of 128x128"):
        VideoOptions().check_output(101, 64, 64, "mp4", limits.max_pixels)
    with pytest.raises(InputError, match="200 video frames of 128x128"):
        VideoOptions(repeat=2).check_output(100, 64, 64, "mp4", limits.max_pixels)
    with pytest.raises(InputError, match="mp4 allows at most 8,192 a side"):
        VideoOptions(scale=8).check_output(1, 1025, 1025, "mp4", 2**40)
    G = gan_serve.load()
    req = PathRequest(keys=(1, 2), steps=64, limits=Limits(max_pixels=64 * 64 * 64 * 4 - 1))
    req.check_output(G, "mp4", video=VideoOptions(scale=1))
    with pytest.raises(InputError, match="output budget"):
        req.check_output(G, "mp4", video=VideoOptions())  # scale 2: four times the pixels


def test_interpolate_writes_a_video_with_the_clis_options(tmp_path):
    out = tmp_path / "walk.webm"
    res = CliRunner().invoke(app, ["interpolate", "--seeds", "3,17", "--steps", "5", "--loop", "--fps", "10",
                                   "--quality", "20", "--scale", "1", "--repeat", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "video of 8 frames" in res.stdout  # a loop: the first frame is not repeated
    decoded, meta = read_video(out.read_bytes())
    assert decoded.shape == (16, 64, 64, 3)
    assert (meta["gan_serve.seeds"], meta["gan_serve.fps"], meta["gan_serve.quality"]) == ("3,17", "10", "20")
    frames = gan_serve.load().interpolate([3, 17], steps=5, loop=True)
    # scale 1: one colour sample per 2x2 pixels caps these 64x64 avatars near 27 dB (BENCHMARKS.md)
    assert psnr(decoded[0], frames[0]) >= 24 and psnr(decoded[15], frames[7]) >= 24


@pytest.mark.parametrize(("args", "match"), [
    (["-o", "a.mp4", "--fps", "0"], "fps must be an integer from 1 to 120, got 0"),
    (["-o", "a.mp4", "--quality", "60"], "quality must be an integer from 0 to 51"),
    (["-o", "a.webm", "--strip"], "webm is a video, never a strip"),
    (["-o", "a.gif", "--fps", "10"], "fps: only for videos (.mp4, .webm), not gif"),
    (["-o", "a.mp4", "--format", "webm"], "does not match the suffix"),
    (["-o", "a.mp4", "--steps", "256", "--repeat", "100"], "the output budget is"),
])
def test_bad_video_options_are_one_line(args, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_exit_2(["interpolate", "--from", "1", "--to", "2", *args])
    assert match in line, line
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_missing_video_extra_is_one_line(tmp_path):
    proc = run_without(["av"], "gan-serve", "interpolate", "--from", "1", "--to", "2",
                       "-o", str(tmp_path / "a.mp4"))
    one_line_naming(proc, "video", "av")
    assert not (tmp_path / "a.mp4").exists()


def test_the_python_api_refuses_float_frames_and_bounds_frames_times_pixels():
    with pytest.raises(InputError, match="uint8"):
        encode_video(ramp(8, 8).astype(np.float32) / 255, "mp4")
    with pytest.raises(InputError, match="at least one frame"):
        encode_video([], "webm")
    frame = ramp(64, 64, n=1)[0]
    with pytest.raises(InputError, match="129 video frames of 512x512"):  # 2^25 pixels hold 128
        encode_video([frame] * 129, "mp4", VideoOptions(scale=8))
    with pytest.raises(InputError, match="every video frame must be 64x64"):
        encode_video([frame, frame[:32]], "mp4")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_converting_at_the_source_size_equals_converting_the_enlarged_frame(scale):
    frame = np.random.RandomState(scale).randint(0, 256, (9, 7, 3)).astype(np.uint8)
    big = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    assert np.array_equal(to_yuv420p(frame, scale), to_yuv420p(big))
    grey = frame[..., :1]
    assert np.array_equal(to_yuv420p(grey, scale), to_yuv420p(np.repeat(grey, 3, axis=2), scale))
