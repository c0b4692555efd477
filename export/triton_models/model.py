"""Triton Python model for gan-serve's seed recipe, generator and pixel mapping (one file, three roles).

The config's `role` parameter picks what `execute` does:
- "latents": seeds (B, 1) int64 and optional psi (B, 1) fp32 -> z (B, z_dim) fp32, recipe v1:
  psi * RandomState(seed).randn(z_dim) as float32 (`z_dim` is a parameter too);
- "generator": z -> images (B, C, H, W) fp32 through `model.onnx` beside this file on ONNX Runtime,
  in zero-padded passes of `micro_batch` latents, as gan-serve runs it on the CPU, so an image's
  bytes never depend on how Triton's dynamic batcher grouped the requests;
- "pixels": images (B, C, H, W) fp32 -> pixels (B, H, W, C) uint8, with the generator's
  `output_range` parameter ("-1,1" for tanh); NaN or infinite values are an error, as in gan-serve.
All call gan_serve_recipe/, the package beside this file that gan-export copies from gan_serve
(latents.py, errors.py and runtime.py themselves, and to_uint8's source), so Triton and gan-serve
cannot drift.

Under numpy 2 tensors cross the backend through DLPack, not `as_numpy()`/`Tensor(name, array)`:
the python backend of Triton 2.51 (nvidia-pytriton 0.7.0) exchanges numpy arrays with a pybind11
built for numpy 1, and under numpy 2 it reads a (3, 1) int64 input [5, 6, 7] as [5, 5, 5] and
returns empty outputs, silently. Under numpy 1 that path is right and its DLPack is the broken
one (the stub dies on numpy 1's capsules), so the numpy major version picks the path.
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


_DLPACK = int(np.__version__.split(".")[0]) >= 2  # see the module docstring


def _input(request, name):
    """The request's tensor `name` as a numpy array, or None when an optional input is absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    return np.from_dlpack(tensor) if _DLPACK else tensor.as_numpy()


def _output(name, array):
    # DLPack refuses read-only arrays, and Triton wants C order: a fresh copy only when needed
    array = np.require(array, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return pb_utils.Tensor.from_dlpack(name, array) if _DLPACK else pb_utils.Tensor(name, array)


def _onnx_session(path, recipe):
    # gan-serve's thread choices (gan_serve.runtime, copied): threads that sleep when idle, as
    # many as the CPUs this process may use; spinning threads starve the other models' stubs
    recipe.configure_threads()
    import onnxruntime as ort  # the generator role's one need beyond numpy

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = recipe.thread_count()
    if recipe.passive_wait():
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.role = params["role"]
        self.recipe = _recipe()
        if self.role == "latents":
            self.z_dim = int(params["z_dim"])
        elif self.role == "generator":
            self.micro_batch = int(params["micro_batch"])
            self.session = _onnx_session(Path(__file__).with_name("model.onnx"), self.recipe)
            self.io = (self.session.get_inputs()[0].name, self.session.get_outputs()[0].name)
        elif self.role == "pixels":
            lo, hi = params["output_range"].split(",")
            self.output_range = (float(lo), float(hi))
        else:
            raise ValueError(f"unknown role {self.role!r}; the config's role is 'latents', "
                             "'generator' or 'pixels'")

    def execute(self, requests):
        one = {"latents": self._latents, "generator": self._generator, "pixels": self._pixels}[self.role]
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=[one(request)]))
            except self.recipe.GanServeError as exc:  # a bad seed, psi or NaN: this request fails
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses

    def _latents(self, request):
        seeds = _input(request, "seeds").reshape(-1)
        psi_in = _input(request, "psi")  # optional: 1 (off) when absent
        psi = np.ones(len(seeds), np.float32) if psi_in is None else psi_in.reshape(-1)
        if len(psi) != len(seeds):
            raise self.recipe.InputError(f"{len(seeds)} seeds but {len(psi)} psi values")
        z = self.recipe.latents_for_seeds([int(s) for s in seeds], self.z_dim)
        z = np.stack([self.recipe.truncate(row, float(p)) for row, p in zip(z, psi, strict=True)])
        return _output("z", z.astype(np.float32))

    def _generator(self, request):
        z = _input(request, self.io[0])
        mb, out = self.micro_batch, []
        for start in range(0, len(z), mb):  # gan_serve's Generator.synthesize: fixed, zero-padded passes
            chunk = z[start : start + mb]
            padded = np.zeros((mb,) + z.shape[1:], z.dtype)
            padded[: len(chunk)] = chunk
            out.append(self.session.run([self.io[1]], {self.io[0]: padded})[0][: len(chunk)])
        return _output(self.io[1], np.concatenate(out).astype(np.float32))

    def _pixels(self, request):
        images = _input(request, "images")
        if not np.isfinite(images).all():  # gan-serve writes no image from NaN; neither do we
            raise self.recipe.CheckpointError(
                "the generator produced NaN or infinite values; no pixels were returned "
                "(`gan-serve inspect` checks its weights)")
        return _output("pixels", self.recipe.to_uint8(images, self.output_range))
