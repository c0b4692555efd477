"""gan-export: TorchScript/ONNX export (issue #4). Not built yet; nothing here is importable API."""
