"""The model file for Triton's Python backend that `export.triton` copies into a repository.

`model.py` runs inside Triton, not here: it imports `triton_python_backend_utils` (Triton's
own module) and `gan_serve_recipe/`, the package `export.triton` copies beside it from gan_serve.
Nothing in gan_serve imports it.
"""
