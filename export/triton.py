"""Triton Inference Server model repository: `repo/<name>/config.pbtxt` + `repo/<name>/1/model.onnx`.

The config is written from the verified ONNX file's own inputs and outputs, and a small
parser for the protobuf text format reads it back so tests (and `verify`) can check it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from gan_serve.errors import InputError, OutputError
from gan_serve.fsutil import check_output_dir, write_bytes_atomic

from .onnx import onnx_io

_TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # ONNX TensorProto elem types


def config_pbtxt(name: str, onnx_path: Path, max_batch: int, max_queue_delay_us: int = 2000,
                 max_queue_size: int = 256, timeout_us: int = 5_000_000) -> str:
    """A config.pbtxt for an onnxruntime_onnx model with dynamic batching and a queue policy."""
    if max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {max_batch}")
    inputs, outputs = onnx_io(onnx_path)

    def tensor(io: tuple[str, int, list]) -> str:
        name_, elem, dims = io
        if elem not in _TRITON_TYPES:
            raise InputError(f"tensor {name_!r} has an ONNX type ({elem}) Triton config does not map")
        shown = ", ".join(str(d) for d in dims[1:])  # batch dim is implicit with max_batch_size
        return f'  {{\n    name: "{name_}"\n    data_type: {_TRITON_TYPES[elem]}\n    dims: [ {shown} ]\n  }}'

    preferred = sorted({b for b in (8, 32, max_batch) if b <= max_batch})
    return "\n".join([
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(tensor(i) for i in inputs) + "\n]",
        "output [\n" + ",\n".join(tensor(o) for o in outputs) + "\n]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "  default_queue_policy {",
        "    timeout_action: REJECT",
        f"    default_timeout_microseconds: {timeout_us}",
        f"    max_queue_size: {max_queue_size}",
        "  }",
        "}",
        "instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]",
        "",
    ])


def write_repository(repo: Path, name: str, onnx_path: Path, max_batch: int) -> Path:
    """Lay out repo/<name>/{config.pbtxt, 1/model.onnx}; refuses to overwrite another model."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise InputError(f"model name {name!r} may use letters, digits, '_', '-' and '.' only")
    if repo.exists() and not repo.is_dir():
        raise OutputError(f"{str(repo)!r} exists and is not a folder")
    check_output_dir(repo.parent if str(repo.parent) else Path("."))
    model_dir = repo / name
    text = config_pbtxt(name, onnx_path, max_batch)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, model_dir / "1" / ".model.onnx.tmp")
    (model_dir / "1" / ".model.onnx.tmp").replace(model_dir / "1" / "model.onnx")
    write_bytes_atomic(model_dir / "config.pbtxt", text.encode())
    return model_dir


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))')


def parse_pbtxt(text: str) -> dict:
    """Parse the protobuf text-format subset Triton configs use into dicts and lists.

    Repeated fields and `[ ... ]` lists become Python lists; scalars stay strings, except
    integers, which become int.
    """
    tokens = [t for t in _tokens(text)]
    pos = 0

    def value() -> object:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        if tok.startswith('"'):
            return tok[1:-1]
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message(end: str | None) -> dict:
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            v = value()
            if key in out:  # repeated field
                out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + (
                    v if isinstance(v, list) else [v])
            else:
                out[key] = v
        pos += 1
        return out

    return message(None)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot parse config.pbtxt near {text[pos:pos + 20]!r}")
        pos = m.end()
        tok = m.group(2) or m.group(3) or m.group(4)
        if tok:
            out.append(tok)
    return out
