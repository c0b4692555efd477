"""benchmarks/gpu.py's CPU dry run, in an interpreter where only torch, onnx, numpy and pillow
(and the standard library) can be imported: what the GPU machine will have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ONLY_THESE = """
import runpy, sys
BLOCKED = ("fastapi", "uvicorn", "starlette", "pydantic", "pydantic_settings", "prometheus_client",
           "onnxruntime", "safetensors", "typer", "click", "tqdm", "httpx", "httpx2", "matplotlib")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on the GPU machine")

sys.meta_path.insert(0, Blocker())
sys.argv = ["benchmarks/gpu.py", "--dry-run"]
runpy.run_path("benchmarks/gpu.py", run_name="__main__")
"""


def test_the_dry_run_checks_every_path_and_times_every_batch_without_the_serving_stack():
    res = subprocess.run([sys.executable, "-c", ONLY_THESE], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    checks = [line for line in lines if line.startswith("| ") and line.endswith(" |") and "/255" not in line
              and ("torch" in line or "eager (dry run" in line)]
    # torch fp32 and bf16, TorchScript fp32 and fp16 (gan-export's files), the device-uint8 pass
    assert len(checks) == 5, res.stdout
    assert all(line.endswith("| yes |") for line in checks), res.stdout
    speed = [line for line in lines if line.startswith("| 4 |") or line.startswith("| 16 |")]
    assert len(speed) == 2 and all(line.count("|") == 5 for line in speed), res.stdout
    assert "Goals at batch 16" in res.stdout
