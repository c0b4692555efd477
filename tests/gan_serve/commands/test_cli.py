"""`gan-serve` commands through typer's CliRunner: outputs, and every bad input."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve import fsutil
from gan_serve import images as img
from gan_serve.checkpoint import save_native
from gan_serve.commands.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str, match: str):
    """A user mistake: exit 2, one line on stderr starting with 'error:', no traceback."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def test_generate_grid_matches_the_api(small_ckpt, tmp_path):
    out = tmp_path / "grid.png"
    res = ok("generate", "--model", small_ckpt, "--seed", 42, "--n", 6, "-o", out)
    assert "6 images (seeds 42-47)" in res.stdout
    G = gan_serve.load(small_ckpt)
    grid = np.asarray(Image.open(out))
    assert np.array_equal(grid, G.grid(range(42, 48)))
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~fsutil._UMASK  # not mkstemp's 0600
    meta = img.read_metadata(out.read_bytes())
    assert meta["gan_serve.seeds"] == "42-47" and meta["gan_serve.recipe"] == "1"


def test_image_i_of_grid_equals_seed_plus_i(small_ckpt, tmp_path):
    ok("generate", "-m", small_ckpt, "--seed", 42, "--n", 64, "--individual", tmp_path / "all")
    ok("generate", "-m", small_ckpt, "--seed", 42 + 37, "--n", 1, "--individual", tmp_path / "one")
    a = (tmp_path / "all" / "seed0079.png").read_bytes()
    assert a == (tmp_path / "one" / "seed0079.png").read_bytes()
    assert len(list((tmp_path / "all").iterdir())) == 64


def test_default_model_and_the_placeholder_note(tmp_path):
    res = ok("generate", "--seed", 42, "--n", 4, "-o", tmp_path / "g.png")  # the bundled, trained G
    assert "placeholder" not in res.stderr and Image.open(tmp_path / "g.png").size == (134, 134)
    G = gan_serve.load("default", backend="torch")  # the same weights flagged as an untrained placeholder
    G.spec.training = {**G.spec.training, "placeholder": True}
    save_native(G.module, G.spec, tmp_path / "p.safetensors")
    res = ok("generate", "-m", tmp_path / "p.safetensors", "--n", 1, "-o", tmp_path / "p.png")
    assert "untrained placeholder (random weights)" in res.stderr


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_bf16_hardware_is_noted(small_ckpt, tmp_path, monkeypatch, native):
    from gan_serve.backends import torch_backend

    monkeypatch.setattr(torch_backend, "cpu_bf16_is_native", lambda: native)
    res = ok("generate", "-m", small_ckpt, "--precision", "bf16", "--n", 1, "-o", tmp_path / "b.png")
    assert ("bf16 is emulated" in res.stderr) is not native
    assert "emulated" not in ok("generate", "-m", small_ckpt, "--n", 1, "-o", tmp_path / "f.png").stderr


def test_seed_list_formats_nrow_and_latents(small_ckpt, tmp_path):
    ok("generate", "-m", small_ckpt, "--seeds", "0-2,100", "--nrow", 4, "-o", tmp_path / "g.webp",
       "--latents-out", tmp_path / "z.npy")
    assert Image.open(tmp_path / "g.webp").size == (4 * 66 + 2, 66 + 2)
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (4, 100)
    assert np.array_equal(z[3], np.random.RandomState(100).randn(100).astype(np.float32))
    ok("generate", "-m", small_ckpt, "--n", 2, "--format", "jpeg", "-o", tmp_path / "g.jpg")
    assert Image.open(tmp_path / "g.jpg").format == "JPEG"


def test_interpolate_strip_gif_and_saved_latents(small_ckpt, tmp_path):
    ok("interpolate", "-m", small_ckpt, "--from", 3, "--to", 17, "--steps", 5, "-o", tmp_path / "s.png")
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    assert strip.shape == (68, 5 * 66 + 2, 3)
    G = gan_serve.load(small_ckpt)
    assert np.array_equal(strip[2:66, 2:66], G.generate([3])[0])
    ok("interpolate", "-m", small_ckpt, "--seeds", "3,17,42", "--loop", "--steps", 4,
       "-o", tmp_path / "a.gif")
    assert Image.open(tmp_path / "a.gif").n_frames == 9
    ok("interpolate", "-m", small_ckpt, "--seeds", "3,17", "--animate", "-o", tmp_path / "a.webp")
    assert Image.open(tmp_path / "a.webp").is_animated
    ok("generate", "-m", small_ckpt, "--seeds", "3,17", "--latents-out", tmp_path / "z.npy",
       "-o", tmp_path / "g.png")
    ok("interpolate", "-m", small_ckpt, "--latents", tmp_path / "z.npy", "--steps", 5,
       "-o", tmp_path / "z.png")
    assert (tmp_path / "z.png").read_bytes() != b""
    assert np.array_equal(np.asarray(Image.open(tmp_path / "z.png")), strip)


def test_generate_draws_saved_latents_as_the_seeds_own_grid(small_ckpt, tmp_path):
    ok("generate", "-m", small_ckpt, "--seeds", "5,9,40", "--psi", 0.7, "--latents-out",
       tmp_path / "z.npy", "-o", tmp_path / "seeds.png")
    # --latents-out saves the seeds' latents before truncation: drawn at the same psi, same images
    res = ok("generate", "-m", small_ckpt, "--latents", tmp_path / "z.npy", "--psi", 0.7,
             "-o", tmp_path / "z.png")
    assert "3 images of latents" in res.stdout
    grid = Image.open(tmp_path / "z.png")
    assert np.array_equal(np.asarray(grid), np.asarray(Image.open(tmp_path / "seeds.png")))
    assert grid.text["gan_serve.latents"].startswith("3x100@sha256:") and "gan_serve.seeds" not in grid.text
    fails("generate", "-m", small_ckpt, "--latents", tmp_path / "z.npy", "--n", 3,
          match="--latents draws the files' latents as a grid: it takes no --n")
    np.save(tmp_path / "z8.npy", np.zeros((2, 8), np.float32))
    fails("generate", "-m", small_ckpt, "--latents", tmp_path / "z8.npy", "-o", tmp_path / "x.png",
          match="latents must have shape (N, 100) for this model, got (2, 8)")
    assert not (tmp_path / "x.png").exists()


def test_convert_prints_the_inferred_config(legacy, tmp_path):
    res = ok("convert", legacy["seed000"].path, tmp_path / "g.safetensors", "--fp16")
    assert "widths=1024-512-256-128" in res.stdout and "fp16" in res.stdout
    assert gan_serve.load(tmp_path / "g.safetensors").spec.config["widths"] == [1024, 512, 256, 128]


def test_convert_custom_arch(legacy, tmp_path):
    ok("convert", legacy["fc_gen"].path, tmp_path / "fc.safetensors",
       "--arch", "benchmarks.reference_nets:FcGen", "--output-range", "0,1")
    fails("generate", "-m", tmp_path / "fc.safetensors", "-o", tmp_path / "fc.png",
          match="never imports code. If you trust that class, name it yourself: "
          "--arch benchmarks.reference_nets:FcGen")
    ok("generate", "-m", tmp_path / "fc.safetensors", "--n", 2, "-o", tmp_path / "fc.png",
       "--arch", "benchmarks.reference_nets:FcGen")  # the file's output range and kwargs still apply


@pytest.mark.parametrize("args,match", [
    (["--n", 0], "n must be an integer from 1 to 4096"),
    (["--n", 5000], "n must be an integer from 1 to 4096"),
    (["--seed", -1], "outside [0, 4294967295]"),
    (["--seed", 4294967295, "--n", 2], "run past"),
    (["--seeds", "3-x"], "malformed seed list"),
    (["--seeds", "1", "--seed", "4"], "give either --seeds or --seed/--n, not both"),
    (["--truncation", 2.5], "psi must be in [0.0, 2.0]"),
    (["--format", "bmp"], "unknown format 'bmp'"),
    (["-o", "grid.tiff"], "cannot tell the format"),
    (["-o", "/no/such/folder/grid.png"], "does not exist"),
    (["--model", "/no/such/g.pth"], "no such file"),
    (["--arch-kwargs", "{bad"], "not valid JSON"),
    (["--output-range", "1"], "--output-range must be LOW,HIGH"),
])
def test_generate_bad_input(args, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails("generate", *args, match=match)
    assert list(tmp_path.iterdir()) == []  # no partial file


@pytest.mark.parametrize("args,match", [
    (["--from", 3], "--from and --to go together"),
    (["--from", 3, "--to", 4, "--seeds", "1,2"], "give exactly one of --from/--to, --seeds or --latents"),
    ([], "give exactly one of --from/--to, --seeds or --latents"),  # the options, not the JSON fields
    (["--from", 3, "--to", 4, "--steps", 1], "steps must be from 2"),
    (["--from", 3, "--to", 4, "--method", "cubic"], "unknown interpolation method"),
    (["--seeds", "5"], "at least two"),
    (["--from", 3, "--to", 4, "-o", "x.bmp"], "cannot tell the format"),
    (["--from", 3, "--to", 4, "-o", "x.gif", "--strip"], "not allowed"),
    (["--latents", "missing.npy"], "cannot read latents"),
])
def test_interpolate_bad_input(args, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails("interpolate", *args, match=match)
    assert list(tmp_path.iterdir()) == []


def test_bad_checkpoints_on_the_command_line(tmp_path, legacy):
    (tmp_path / "notes.pth").write_text("not a model")
    fails("generate", "-m", tmp_path / "notes.pth", "-o", tmp_path / "g.png", match="not a checkpoint")
    data = legacy["examples_nc3"].path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:1000])
    fails("generate", "-m", tmp_path / "cut.pth", "-o", tmp_path / "g.png", match="truncated or corrupt")
    fails("inspect", legacy["fc_gen"].path, match="--arch")
    fails("convert", legacy["seed000"].path, tmp_path / "g.pth", match="must end in .safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pth", "notes.pth"]


def test_malicious_checkpoint_is_refused_on_the_command_line(tmp_path):
    payload = (b"\x80\x02cpathlib\nPath.touch\nq\x00cpathlib\nPosixPath\nq\x01X"
               + len(str(tmp_path / "pwned")).to_bytes(4, "little") + str(tmp_path / "pwned").encode()
               + b"q\x02\x85q\x03Rq\x04\x85q\x05Rq\x06.")
    (tmp_path / "evil.pth").write_bytes(payload)
    fails("generate", "-m", tmp_path / "evil.pth", "-o", tmp_path / "g.png", match="nothing in it was run")
    assert not (tmp_path / "pwned").exists()


def test_read_only_output_folder(tmp_path, small_ckpt):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        fails("generate", "-m", small_ckpt, "-o", ro / "g.png", match="not writable")
        assert list(ro.iterdir()) == []
        return
    # root writes anywhere: run the real command as an unprivileged user
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop privileges")
    base = Path(tempfile.mkdtemp())  # pytest's own tmp root is private to root
    try:
        base.chmod(0o755)
        ckpt = base / "g.pth"
        shutil.copy(small_ckpt, ckpt)
        ckpt.chmod(0o644)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        proc = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
             "gan_serve", "generate", "-m", str(ckpt), "-o", str(ro / "g.png")],
            capture_output=True, text=True, cwd=base, env={**os.environ, "HOME": str(base)},
        )
        assert proc.returncode == 2, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: output folder") and "not writable" in last
        assert "Traceback" not in proc.stderr
        assert list(ro.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_help_teaches():
    res = ok("generate", "--help")
    for words in ("SEED..SEED+N-1", "--rank-with", "--truncation", "--individual", "0-35,100"):
        assert words in res.stdout
    assert "slerp" in ok("interpolate", "--help").stdout


@pytest.mark.parametrize("command", ["generate", "interpolate", "convert", "inspect", "serve", "bulk"])
def test_help_shows_metavars_people_read(command):
    text = ok(command, "--help").stdout
    # typer writes a required argument as {NAME} in the usage line: NAME, not a parameter name
    assert not re.search(r"<(int|str|float|bool|list\[.*?\])>|\{[a-z_]+\}", text), text
    for metavar in {"generate": ("--seeds SEEDS", "--n N", "PSI", "--output PATH", "--outdir DIR"),
                    "interpolate": ("--from SEED", "--latents PATH", "--steps N", "PSI"),
                    "convert": ("{SOURCE} {DEST}", "  SOURCE  "), "inspect": ("  CHECKPOINT  ",),
                    "serve": ("--network PATH", "--rank-with PATH"),
                    "bulk": ("--outdir DIR", "--seeds SEEDS", "PSI")}[command]:
        assert metavar in text, metavar


def test_stylegan_names_are_aliases(small_ckpt, tmp_path):
    ok("generate", "--network", small_ckpt, "--seeds", "3,4", "--trunc", 0.7, "--outdir", tmp_path / "d")
    ok("generate", "--model", small_ckpt, "--seeds", "3,4", "--truncation", 0.7, "--individual",
       tmp_path / "e")
    for name in ("seed0003.png", "seed0004.png"):
        assert (tmp_path / "d" / name).read_bytes() == (tmp_path / "e" / name).read_bytes()


def test_latents_out_alone_writes_only_the_latents(small_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.png").write_bytes(b"mine")
    ok("generate", "-m", small_ckpt, "--seed", 5, "--n", 3, "--latents-out", "keys.npy")
    assert (tmp_path / "grid.png").read_bytes() == b"mine"  # not overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "keys.npy"]
    assert np.array_equal(np.load("keys.npy"), gan_serve.load(small_ckpt).latents([5, 6, 7]))
    ok("generate", "-m", small_ckpt, "--seed", 5, "--n", 3, "--latents-out", "k2.npy", "-o", "g.png")
    assert (tmp_path / "g.png").exists()  # with an output asked for, the grid too


def test_interpolation_frames_are_capped_before_the_model_loads(tmp_path, small_ckpt):
    line = fails("interpolate", "-m", "/no/such/model.pth", "--seeds", "0-4095", "--steps", 1024,
                 "-o", tmp_path / "i.png", match="make 4,189,186 frames; the limit is 4,096")
    assert "no such file" not in line
    import gan_serve

    with pytest.raises(gan_serve.InputError, match="the limit is 4,096 per interpolation"):
        gan_serve.load(small_ckpt).interpolate(list(range(100)), steps=50)
