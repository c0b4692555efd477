"""The options shared by the three CLIs: one LoadOptions value, --arch from the current folder,
`serve` registered without the HTTP stack."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from gan_serve.commands.cli import app
from gan_serve.errors import InputError
from gan_serve.spec import LoadOptions
from tests.gan_serve.tiny_models import MY_MODELS_PY


@pytest.fixture
def my_models(tmp_path, monkeypatch):
    """./my_models.py and a checkpoint of its Gen, in a folder that is not on sys.path."""
    (tmp_path / "my_models.py").write_text(MY_MODELS_PY)
    g = torch.Generator().manual_seed(0)
    torch.save({"fc.weight": torch.randn(192, 8, generator=g), "fc.bias": torch.zeros(192)},
               tmp_path / "g.pth")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    yield tmp_path / "g.pth"
    sys.modules.pop("my_models", None)


def test_arch_finds_a_module_in_the_current_folder(my_models):
    assert str(my_models.parent) not in sys.path
    res = CliRunner().invoke(app, ["generate", "-m", "g.pth", "--arch", "my_models:Gen", "--z-dim", "8",
                                   "--output-range", "-1,1", "--n", "4", "-o", "grid.png"])
    assert res.exit_code == 0, res.output
    assert (my_models.parent / "grid.png").is_file()
    assert str(my_models.parent) not in sys.path  # only while the named module imported


def test_serve_loads_with_arch(my_models):
    from gan_serve.http.app import load_models
    from gan_serve.http.settings import ServeSettings

    settings = ServeSettings(models=[str(my_models)], arch="my_models:Gen", arch_kwargs='{"z_dim": 8}',
                             z_dim=8, output_range="-1,1")
    G = load_models(settings)["g"]
    assert G.spec.arch == "my_models:Gen" and G.generate([0]).shape == (1, 8, 8, 3)


@pytest.mark.parametrize(("args", "match"), [
    (("x:Y", "[1, 2]", None, None), "--arch-kwargs must be a JSON object"),
    (("x:Y", "{bad", None, None), "--arch-kwargs is not valid JSON"),
    (("x:Y", None, "0-1", None), "--output-range must be LOW,HIGH"),
    (("x:Y", None, "1,0", None), "LOW < HIGH"),
    (("x:Y", None, None, 0), "--z-dim must be from 1 to"),
])
def test_load_options_refuse_bad_text_in_one_line(args, match):
    with pytest.raises(InputError, match=match):
        LoadOptions.from_text(*args)


def test_load_options_parse_their_flags():
    opts = LoadOptions.from_text("m:G", '{"ngf": 8}', "0,1", 64)
    assert opts == LoadOptions("m:G", {"ngf": 8}, (0.0, 1.0), 64)


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("module", ["export.cli", "training.cli"])
def test_export_and_train_clis_do_not_import_the_serve_cli(module):
    assert _run(f"import sys, {module}; print('gan_serve.commands.cli' in sys.modules)").strip() == "False"


def test_serve_parses_its_options_without_fastapi_and_names_the_extra():
    code = (
        "import sys; sys.modules['fastapi'] = None\n"  # as if the serve extra were not installed
        "from typer.testing import CliRunner; from gan_serve.commands.cli import app\n"
        "r = CliRunner()\n"
        "h = r.invoke(app, ['serve', '--help']); assert h.exit_code == 0 and '--arch' in h.output\n"
        "bad = r.invoke(app, ['serve', '--port', 'x']); assert bad.exit_code == 2, bad.output\n"
        "use = r.invoke(app, ['serve']); print(use.exit_code); print(use.stderr)"
    )
    code_line, *lines = _run(code).strip().splitlines()
    assert code_line == "2" and len(lines) == 1, lines
    assert lines[0] == ('error: gan-serve serve needs fastapi (the serve extra): pip install -e ".[serve]" '
                        'in a clone, or pip install "gan-serve[serve]"')


def test_pinned_options_load_the_same_path_without_choosing_again(small_ckpt):
    import gan_serve
    from gan_serve.loading import HowToLoad
    from gan_serve.spec import LoadOptions

    how = HowToLoad(LoadOptions(z_dim=None), backend="auto")
    G = gan_serve.load(small_ckpt)  # auto: whatever this machine picks
    pinned = how.pinned_to(G)
    assert (pinned.backend, pinned.precision, pinned.device) == (G.runner.kind, G.runner.precision, "cpu")
    assert pinned.options == how.options and pinned.backend != "auto"
    again = pinned.load(str(small_ckpt))
    assert (again.backend, again.runner.precision, again.runner.micro_batch) == (
        G.backend, G.runner.precision, G.runner.micro_batch)


def _helps() -> dict[str, str]:
    """Every command's --help of the three CLIs, whitespace-normalised."""
    from export.cli import app as export_app
    from training.cli import app as train_app

    out = {}
    for cli, commands in ((app, ["generate", "interpolate", "bulk", "inspect", "convert", "serve"]),
                          (export_app, ["onnx", "torchscript", "triton", "all", "verify"]),
                          (train_app, [])):
        for command in commands or [None]:
            res = CliRunner().invoke(cli, [*([command] if command else []), "--help"])
            assert res.exit_code == 0, res.output
            out[f"{cli.info.name} {command or ''}".strip()] = " ".join(res.output.split())
    return out


def test_one_metavar_style_across_the_three_clis():
    import re

    for name, text in _helps().items():
        assert not re.search(r"<(int|float|str|path|text)>", text), (name, text)  # typer's own style
        usage = text.partition("Usage: ")[2].partition(" ")[2].split(" [OPTIONS] ")[-1]
        assert not re.search(r"\{[a-z]", usage), (name, usage)  # arguments upper-case too: {CHECKPOINT}
    helps = _helps()
    assert "--opset N " in helps["gan-export onnx"] and "-o, --output PATH " in helps["gan-export onnx"]
    assert "{ARTIFACT} {CHECKPOINT}" in helps["gan-export verify"]
    assert "--steps N " in helps["gan-train"] and "--data SOURCE " in helps["gan-train"]
    assert "--lr-g X " in helps["gan-train"]


def test_model_help_names_onnx_and_serve_help_names_every_env_var():
    from gan_serve.commands.serve import SETTINGS_OF
    from gan_serve.http.settings import ServeSettings

    helps = _helps()
    for name in ("gan-serve generate", "gan-serve serve"):
        assert "exported artifact (.onnx, TorchScript .pt)" in helps[name], name
    for flag, field in SETTINGS_OF.items():
        assert field in ServeSettings.model_fields, field
        assert f"GAN_SERVE_{field.upper()}" in helps["gan-serve serve"], flag
    assert "[env var: GAN_SERVE_PORT]" in helps["gan-serve serve"]
    assert "GAN_SERVE_MODEL]" in helps["gan-serve serve"]
    assert "GAN_SERVE_ARCH" not in helps["gan-serve generate"]  # serve's --arch help only, not the shared one
