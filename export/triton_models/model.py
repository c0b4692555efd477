"""Triton Python model for gan-serve's seed recipe and pixel mapping (one file, two roles).

The config's `role` parameter picks what `execute` does:
- "latents": seeds (B, 1) int64 and optional psi (B, 1) fp32 -> z (B, z_dim) fp32, recipe v1:
  psi * RandomState(seed).randn(z_dim) as float32 (`z_dim` is a parameter too);
- "pixels": images (B, C, H, W) fp32 -> pixels (B, H, W, C) uint8, with the generator's
  `output_range` parameter ("-1,1" for tanh).
Both call gan_serve_recipe/, the package beside this file that gan-export copies from gan_serve
(latents.py and errors.py themselves, and to_uint8's source), so Triton and gan-serve cannot drift.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _recipe():
    """The package gan_serve_recipe/ beside this file, whatever Triton's sys.path holds."""
    folder = Path(__file__).with_name("gan_serve_recipe")
    spec = importlib.util.spec_from_file_location(
        "gan_serve_recipe", folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["gan_serve_recipe"] = module  # its relative imports resolve through sys.modules
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.role = params["role"]
        self.recipe = _recipe()
        if self.role == "latents":
            self.z_dim = int(params["z_dim"])
        elif self.role == "pixels":
            lo, hi = params["output_range"].split(",")
            self.output_range = (float(lo), float(hi))
        else:
            raise ValueError(f"unknown role {self.role!r}; the config's role is 'latents' or 'pixels'")

    def execute(self, requests):
        one = self._latents if self.role == "latents" else self._pixels
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=[one(request)]))
            except self.recipe.InputError as exc:  # a bad seed or psi: this request fails, not the batch
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses

    def _latents(self, request):
        seeds = pb_utils.get_input_tensor_by_name(request, "seeds").as_numpy().reshape(-1)
        psi_in = pb_utils.get_input_tensor_by_name(request, "psi")  # optional: 1 (off) when absent
        psi = np.ones(len(seeds), np.float32) if psi_in is None else psi_in.as_numpy().reshape(-1)
        if len(psi) != len(seeds):
            raise self.recipe.InputError(f"{len(seeds)} seeds but {len(psi)} psi values")
        z = self.recipe.latents_for_seeds([int(s) for s in seeds], self.z_dim)
        z = np.stack([self.recipe.truncate(row, float(p)) for row, p in zip(z, psi, strict=True)])
        return pb_utils.Tensor("z", z.astype(np.float32))

    def _pixels(self, request):
        images = pb_utils.get_input_tensor_by_name(request, "images").as_numpy()
        return pb_utils.Tensor("pixels", self.recipe.to_uint8(images, self.output_range))
