"""A forward pass holds at most PASS_PIXELS output pixels: a KB-sized file that declares huge
images costs one image's memory a pass, not a full micro-batch's (SECURITY.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gan_serve
from gan_serve.backends import CPU_MICRO_BATCH, GPU_MICRO_BATCH, micro_batch_for
from tests.gan_serve.tiny_models import native_dcgan


@pytest.mark.parametrize(("device", "resolution", "expected"), [
    ("cpu", None, CPU_MICRO_BATCH), ("cpu", 64, CPU_MICRO_BATCH), ("cpu", 512, CPU_MICRO_BATCH),
    ("cpu", 1024, 4), ("cpu", 2048, 1), ("cpu", 4096, 1),
    ("cuda", 64, GPU_MICRO_BATCH), ("cuda:1", 256, GPU_MICRO_BATCH), ("cuda", 512, 16), ("cuda", 4096, 1),
])
def test_passes_narrow_only_for_images_beyond_the_full_width(device, resolution, expected):
    assert micro_batch_for(device, resolution) == expected


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_kb_file_declaring_2048x2048_runs_one_image_a_pass(tmp_path, precision):
    path = native_dcgan(tmp_path / "huge.safetensors", 2048, width=1, z_dim=2)
    assert path.stat().st_size < 16_000
    G = gan_serve.load(path, backend="torch", precision=precision)
    assert G.runner.micro_batch == 1
    assert G.provenance([0])["gan_serve.micro_batch"] == "1"


_PEAK = """
import resource, sys, gan_serve
G = gan_serve.load(sys.argv[1], backend="torch", precision="bf16")
G.generate([0])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_one_image_of_a_kb_file_declaring_2048x2048_costs_one_images_memory(tmp_path):
    path = native_dcgan(tmp_path / "huge.safetensors", 2048, width=1, z_dim=2)
    base = subprocess.run([sys.executable, "-c", "import gan_serve, torch, resource; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"],
                          capture_output=True, text=True, check=True)
    run = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True,
                         check=True)
    extra_mb = int(run.stdout.split()[-1]) - int(base.stdout.split()[-1])
    # one 2048x2048 image: a few float maps of 4 M values (16 MB each); a 16-image pass was ~3 GB
    assert extra_mb < 600, extra_mb
