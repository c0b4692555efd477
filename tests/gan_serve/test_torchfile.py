"""A torch.save() file costs no more memory than its bytes: expansions, overlapping and shared
views, allocating pickles, exotic tensor kinds and dtypes are refused by name, in one line."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmarks.reference_nets import ExamplesNetG
from gan_serve.arch import DCGANGenerator
from gan_serve.checkpoint import load_generator, safe_torch_load, save_native
from gan_serve.discriminator import load_discriminator
from gan_serve.errors import CheckpointError, GanServeError
from gan_serve.spec import DCGANConfig, ModelSpec
from tests.gan_serve.one_line import one_line_exit_2

ONE = torch.zeros(1)


def netg(nz: int = 16, ngf: int = 4, nc: int = 3) -> dict[str, torch.Tensor]:
    return ExamplesNetG(nz=nz, ngf=ngf, nc=nc).state_dict()


def expanded_netg(width: int) -> dict[str, torch.Tensor]:
    """A two-layer netG of `width` channels whose every tensor is one float, expanded."""
    sd = {"main.0.weight": ONE.expand(100, width, 4, 4), "main.3.weight": ONE.expand(width, 3, 4, 4)}
    for p in ("weight", "bias", "running_mean", "running_var"):
        sd[f"main.1.{p}"] = ONE.expand(width)
    sd["main.1.num_batches_tracked"] = torch.tensor(0)
    return sd


def zip_with_pickle(path: Path, pkl: bytes) -> Path:
    """A torch zip file whose data.pkl is `pkl` (written by hand, as an attacker would)."""
    buf = io.BytesIO()
    torch.save({}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            out.writestr(info.filename, pkl if info.filename.endswith("data.pkl") else src.read(info))
    return path


@pytest.mark.parametrize("legacy_format", [False, True])
def test_a_stride_0_expansion_is_refused_by_name(tmp_path, legacy_format):
    path = tmp_path / "g.pth"
    torch.save(expanded_netg(4096), path, _use_new_zipfile_serialization=not legacy_format)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match=r"tensor 'main.0.weight' is a stride-0 expansion "
                                              r"to \(100, 4096, 4, 4\)"):
        load_generator(path)
    line = one_line_exit_2(["generate", "-m", str(path), "-o", str(tmp_path / "g.png")])
    assert "stride-0 expansion" in line


def test_loading_allocates_no_more_than_the_weights(tmp_path):
    """In a fresh process, peak RSS growth past loading a tiny honest file: loading a 6 KB
    native file that declares 2048x2048 images (the loader runs no forward pass; what a
    request may generate is the request budget's business), then refusing a 3 KB file whose
    expansions would take 1 GiB when copied into a module."""
    torch.save(expanded_netg(2048), tmp_path / "hostile.pth")
    torch.save(netg(), tmp_path / "honest.pth")
    config = DCGANConfig(z_dim=8, widths=[1] * 9, channels=3)
    spec = ModelSpec(config=config.to_dict(), z_dim=8, img_resolution=2048, channels=3)
    big = save_native(DCGANGenerator(config), spec, tmp_path / "big.safetensors")
    assert config.img_resolution == 2048 and big.stat().st_size < 8192
    code = ("import resource, sys, gan_serve\n"  # the loader itself: no backend, no forward
            "from gan_serve.checkpoint import load_generator as load\n"
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
            "load(sys.argv[1])\nbefore = peak()\n"
            "print(load(sys.argv[2]).spec.img_resolution, peak() - before)\n"
            "try:\n    gan_serve.load(sys.argv[3])\nexcept gan_serve.GanServeError as e:\n"
            "    print(type(e).__name__, peak() - before)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "honest.pth"), str(big),
                          str(tmp_path / "hostile.pth")], capture_output=True, text=True, check=True)
    (res, grew_big), (kind, grew) = (line.split() for line in out.stdout.splitlines())
    assert res == "2048" and int(grew_big) < 32 * 2**20, out.stdout
    assert kind == "CheckpointError" and int(grew) < 32 * 2**20, out.stdout


def test_overlapping_and_shared_views_are_refused(tmp_path):
    sd = netg()
    w = sd["main.0.weight"]  # (16, 32, 4, 4): 8,192 values on 4,096 of storage
    sd["main.0.weight"] = torch.zeros(w.numel() // 2).as_strided(w.shape, (128, 4, 1, 1))
    torch.save(sd, tmp_path / "overlap.pth")
    with pytest.raises(CheckpointError, match="'main.0.weight' declares 8,192 values .* holds 16,384"):
        load_generator(tmp_path / "overlap.pth")
    storage = torch.zeros(2**12)  # 16 KiB, viewed whole by 300 names
    torch.save({f"main.{i}.weight": storage.view(16, 16, 4, 4) for i in range(300)},
               tmp_path / "shared.pth")
    with pytest.raises(CheckpointError, match="views of one storage of 16,384 bytes"):
        load_generator(tmp_path / "shared.pth")


@pytest.mark.parametrize("legacy_format", [False, True])
def test_a_pickle_that_allocates_from_a_number_is_refused(tmp_path, legacy_format):
    n = 3 * 2**30  # bytearray(n) would be 3 GiB of zeros from 40 bytes of pickle
    pkl = (b"\x80\x02}q\x00X\x01\x00\x00\x00xq\x01cbuiltins\nbytearray\nq\x02\x8a\x05"
           + n.to_bytes(5, "little") + b"\x85q\x03Rq\x04s.")
    if legacy_format:  # magic number, protocol, sys info, the object, its storage keys
        import torch.serialization as ts

        path = tmp_path / "bomb.pth"
        path.write_bytes(b"".join(pickle.dumps(x, protocol=2) for x in (
            ts.MAGIC_NUMBER, ts.PROTOCOL_VERSION, {"little_endian": True})) + pkl
            + pickle.dumps([], protocol=2))
    else:
        path = zip_with_pickle(tmp_path / "bomb.pth", pkl)
    with pytest.raises(CheckpointError, match=r"builtins.bytearray\) at key 'x'"):
        safe_torch_load(path)
    assert "builtins.bytearray" in one_line_exit_2(["inspect", str(path)])


def test_compressed_zip_members_are_refused(tmp_path):
    torch.save({"w": torch.zeros(2**16)}, tmp_path / "plain.pth")
    src = zipfile.ZipFile(tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info))
    with pytest.raises(CheckpointError, match="compressed members"):
        safe_torch_load(tmp_path / "deflated.pth")


def _exotic(kind: str, t: torch.Tensor) -> torch.Tensor:
    return {
        "sparse_coo": lambda: t.to_sparse(),
        "sparse_csr": lambda: t.reshape(t.shape[0], -1).to_sparse_csr(),
        "quantized": lambda: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8),
        "nested": lambda: torch.nested.nested_tensor([t.flatten()[:2], t.flatten()[:3]]),
        "meta": lambda: torch.empty(t.shape, device="meta"),
    }[kind]()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "quantized", "nested", "meta"])
def test_non_dense_tensors_are_refused_by_key(tmp_path, kind):
    sd = netg()
    sd["main.3.weight"] = _exotic(kind, sd["main.3.weight"])
    torch.save(sd, tmp_path / f"{kind}.pth")
    for load in (load_generator, load_discriminator):
        with pytest.raises(CheckpointError, match="at key 'main.3.weight'|tensor 'main.3.weight'"):
            load(tmp_path / f"{kind}.pth")
    assert "main.3.weight" in one_line_exit_2(["inspect", str(tmp_path / f"{kind}.pth")])


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool, torch.int32, torch.uint8,
                                   torch.float8_e4m3fn, torch.float8_e5m2])
def test_exotic_dtypes_are_refused_by_name(tmp_path, dtype):
    sd = netg()
    sd["main.3.weight"] = sd["main.3.weight"].to(dtype)
    torch.save(sd, tmp_path / "g.pth")
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=f"tensor 'main.3.weight' has dtype {name};"):
        load_generator(tmp_path / "g.pth")
    from safetensors.torch import save_file

    try:
        save_file(sd, str(tmp_path / "g.safetensors"))
    except KeyError:  # safetensors before 0.7 has no code for complex or float8 (pyproject allows 0.4)
        _write_safetensors_by_hand(sd, tmp_path / "g.safetensors", {"main.3.weight": _CODES[dtype]})
        with pytest.raises(CheckpointError):  # that safetensors cannot read it either: one line
            load_generator(tmp_path / "g.safetensors")
        return
    with pytest.raises(CheckpointError, match=f"tensor 'main.3.weight' has dtype {name};"):
        load_generator(tmp_path / "g.safetensors")


_CODES = {torch.complex64: "C64", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def _write_safetensors_by_hand(sd: dict, path, codes: dict[str, str]) -> None:
    """The safetensors layout (8-byte header length, JSON header, raw bytes), for dtypes the
    installed writer does not know."""
    import struct

    header, body = {}, b""
    for key, t in sd.items():
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        dtype = codes.get(key) or {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        header[key] = {"dtype": dtype, "shape": list(t.shape),
                       "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def test_half_and_double_weights_and_training_states_still_load(tmp_path, legacy):
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in netg().items()},
                   tmp_path / "g.pth")
        assert load_generator(tmp_path / "g.pth").spec.z_dim == 16
    load_generator(legacy["seed001_dict"].path)  # optimizer state beside the weights
    state = {"torch": torch.get_rng_state(), "config": json.dumps({}), "G": netg()}
    torch.save(state, tmp_path / "state.pt")
    assert torch.equal(safe_torch_load(tmp_path / "state.pt")["torch"], state["torch"])


VIEW = st.tuples(st.lists(st.integers(1, 64), min_size=1, max_size=4),
                 st.lists(st.integers(0, 64), min_size=4, max_size=4), st.integers(0, 8))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(views=st.dictionaries(st.sampled_from(["main.0.weight", "main.1.weight", "main.1.bias",
                                              "main.3.weight", "x.0.weight"]), VIEW, min_size=1),
       storage=st.integers(1, 4096))
@example(views={"main.0.weight": ([1], [0, 0, 0, 0], 0), "main.1.weight": ([1], [0, 0, 0, 0], 0)}, storage=1)
def test_arbitrary_views_load_within_their_bytes_or_fail_in_one_line(tmp_path, views, storage):
    """Any shapes, strides and offsets over small storages: either each tensor's values are
    all its own bytes, or the loader refuses in one line; nothing else escapes."""
    base = torch.zeros(storage)
    sd = {}
    for name, (shape, strides, offset) in views.items():
        try:
            sd[name] = base.as_strided(shape, strides[: len(shape)], offset)
        except RuntimeError:  # out of bounds: torch.save could not write it either
            continue
    if not sd:
        return
    torch.save(sd, tmp_path / "h.pth")
    try:
        obj = safe_torch_load(tmp_path / "h.pth")
    except CheckpointError as exc:
        assert "\n" not in str(exc)
    else:
        # identical views under several names (G and G_ema) count once, as the loader counts them
        views = {(t.storage_offset(), tuple(t.shape), tuple(t.stride())): t for t in obj.values()}
        need = sum(t.numel() * t.element_size() for t in views.values())
        assert need <= storage * 4
    with pytest.raises(GanServeError):
        load_generator(tmp_path / "h.pth")  # none of these is a generator, or it is refused


def test_a_layer_may_not_hold_more_values_per_image_than_the_largest_image(tmp_path):
    """2 MB of honest weights: one hidden layer of 8,192 channels at 128x128 would be 512 MiB
    of activations per image (8 GiB per 16-image micro-batch)."""
    config = DCGANConfig(z_dim=1, widths=[1, 1, 1, 1, 1, 8192], channels=3, batch_norm=False)
    torch.save(DCGANGenerator(config).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(GanServeError, match=r"layer 5 makes 8192 x 128x128 = 134,217,728 values "
                                            r"per image; the limit is 67,108,864"):
        load_generator(tmp_path / "wide.pth")
