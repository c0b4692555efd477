"""benchmarks/layers.py: per-layer FLOPs in execution order, and ONNX Runtime's per-node times
read from its own profiler for a real exported generator."""

from __future__ import annotations

import gan_serve
from benchmarks import layers
from benchmarks.reference_nets import ExamplesNetG, randomize
from export import export_onnx, prepare


def _netg(tmp_path, ngf: int = 8):
    import torch

    path = tmp_path / "netG.pth"
    torch.save(randomize(ExamplesNetG(ngf=ngf), 0).state_dict(), path)
    return path


def test_conv_flops_are_each_deconvolution_in_order(tmp_path):
    module = gan_serve.load(_netg(tmp_path), backend="torch", precision="fp32").module
    ngf, n = 8, 3  # 2 * Cin * Cout * k^2 * Hin * Win * n, input sizes 1, 4, 8, 16, 32
    shapes = ((100, 8 * ngf, 1), (8 * ngf, 4 * ngf, 4), (4 * ngf, 2 * ngf, 8), (2 * ngf, ngf, 16),
              (ngf, 3, 32))
    want = [2 * cin * cout * 16 * side * side * n for cin, cout, side in shapes]
    assert layers.conv_flops(module, 100, n) == want


def test_node_times_name_every_deconvolution_of_the_exported_graph(tmp_path):
    G = gan_serve.load(_netg(tmp_path), backend="torch")
    onnx = tmp_path / "netG.onnx"
    export_onnx(prepare(G), onnx)
    nodes = layers.node_times(onnx, G.latents(range(4)), runs=2, threads=1)
    op, wall = nodes.pop("")
    convs = [secs for op, secs in nodes.values() if op == "ConvTranspose"]
    assert len(convs) == 5 and all(secs > 0 for secs in convs)
    assert {op for op, _ in nodes.values()} >= {"ConvTranspose", "Relu", "Tanh"}
    assert op == "run" and wall > 0
