"""The fixtures the command tests share with the HTTP and Ray tests (a served model, an .onnx
model), from where those define them."""

from tests.gan_serve.http.conftest import serve_process
from tests.gan_serve.scale.conftest import onnx_model

__all__ = ["onnx_model", "serve_process"]
