"""The one way in for a full-model pickle (`torch.save(model)`): `gan-serve convert SRC DEST
--trust-pickle`, which turns the user's own file into the native format once.

Such a file is a program: unpickling it imports and calls whatever the file names, so every
other entry point refuses it (gan_serve.checkpoint reads weights only). Here it is unpickled
with ``weights_only=False`` only because the user typed --trust-pickle for this one file; the
CLI says that this runs code before it does. What comes out is data again: a DCGAN-shaped
module becomes a plain `dcgan` native file; any other class is saved under its name, which
loads later only with `--arch` (ARCHITECTURE.md "Trust").
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import torch
from torch import nn

from .checkpoint import current_folder_first, finish_module, probe_custom
from .errors import CheckpointError, InputError, UnknownArchitectureError, first_line
from .fileformat import sniff
from .fsutil import file_sha256
from .legacy import GENERATOR_KEYS, find_state_dict, spec_and_weights
from .seam import takes_flat_z
from .spec import LoadedModel, LoadOptions, ModelSpec

WARNING = ("warning: --trust-pickle: loading {path} runs code from the file (a pickle can do "
           "anything you can); use it only for a file you made or trust")


class _MissingClass(Exception):
    """A class the pickle names cannot be imported here."""


def _pickle_module(arch: str | None) -> types.SimpleNamespace:
    """pickle, except that classes a training script pickled as `__main__.X` are looked up in
    the module the user named with --arch (a copy of that script's class)."""
    main = arch.partition(":")[0] if arch else None

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            module = main if module == "__main__" and main else module
            try:
                return super().find_class(module, name)
            except (AttributeError, ImportError):
                raise _MissingClass(f"{module}.{name}") from None

    return types.SimpleNamespace(__name__="pickle", Unpickler=Unpickler, load=pickle.load)


def unpickle_trusted(path: Path, arch: str | None) -> object:
    """torch.load(weights_only=False): RUNS CODE. Only for `convert --trust-pickle`."""
    sniff(path)  # a missing, empty or TorchScript file is refused as everywhere else
    try:
        with current_folder_first(), open(path, "rb") as fh:
            return torch.load(fh, map_location="cpu", weights_only=False,
                              pickle_module=_pickle_module(arch))
    except _MissingClass as exc:
        raise InputError(
            f"{str(path)!r} needs the class {exc}, which is not importable here. Put the class "
            "definition in a module in the current folder (e.g. my_models.py) and pass --arch "
            "my_models:ClassName; a class the script defined itself (__main__) is looked up there"
        ) from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{str(path)!r} is truncated or corrupt ({first_line(exc)})") from None


def _generator_in(obj: object) -> nn.Module | dict[str, torch.Tensor]:
    """The generator module in what was unpickled, or a generator state dict."""
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict):
        for key in GENERATOR_KEYS:
            if isinstance(obj.get(key), nn.Module):
                return obj[key]
    found = find_state_dict(obj)
    if found is None:
        raise CheckpointError(f"no generator found in the pickle (a {type(obj).__name__}); expected "
                              f"a module, or a dict holding one under {', '.join(GENERATOR_KEYS)}")
    return found[0]


def load_full_pickle(path: str | Path, options: LoadOptions, name: str | None = None) -> LoadedModel:
    """Unpickle a full-model file the user trusts (this runs its code) and describe what it
    holds as gan-serve does for weights: an inferred DCGAN, else the class it is an instance of."""
    path = Path(path)
    found = _generator_in(unpickle_trusted(path, options.arch))
    module = found if isinstance(found, nn.Module) else None
    sd = module.state_dict() if module is not None else found  # prefixes: spec_and_weights
    try:  # DCGAN-shaped: rebuilt from the weights as the built-in class, no code needed later
        spec, mapped = spec_and_weights(sd, LoadOptions(None, None, options.output_range))
        loaded_module = finish_module(spec, mapped, spec.describe())
        source = "full-model pickle, DCGAN weights"
    except UnknownArchitectureError:
        if module is None:
            raise
        if options.output_range is None:
            raise InputError("this pickled class is not DCGAN-shaped: give its output range, "
                             "--output-range -1,1 for tanh or 0,1 for sigmoid output") from None
        cls = type(module)
        spec = ModelSpec(arch=options.arch or f"{cls.__module__}:{cls.__qualname__}",
                         config=dict(options.arch_kwargs or {}), z_dim=options.z_dim or 100,
                         output_range=options.output_range, z_layout="auto")
        module = module.float().eval()
        probe_custom(module, spec)
        loaded_module = takes_flat_z(module, spec)
        source = f"full-model pickle of {spec.arch}"
    return LoadedModel(loaded_module, spec, source, file_sha256(path), name or path.stem)
