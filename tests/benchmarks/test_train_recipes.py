"""benchmarks/train_recipes.py's pieces: the reference nets, the avatars set and its scorer, the
intermediate checks (benchmarks/recipe_checks.py) and the run options."""

from __future__ import annotations

import pytest
import torch

from benchmarks.avatar_set import Avatars, score_avatars
from benchmarks.digits import ModeScore
from benchmarks.recipe_checks import Checks, reached
from benchmarks.train_recipes import describe, main, reference_nets, run_gan_train, run_reference


def test_reference_nets_are_the_examples_nets_at_64_and_one_layer_fewer_at_32() -> None:
    g64, d64 = reference_nets(100, 64, 64, 3, 64)
    convs = [m for m in g64 if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(100, 512), (512, 256), (256, 128),
                                                                  (128, 64), (64, 3)]
    assert g64(torch.randn(2, 100, 1, 1)).shape == (2, 3, 64, 64)
    assert d64(torch.randn(2, 3, 64, 64)).shape == (2,)
    g32, d32 = reference_nets(100, 64, 64, 1, 32)
    assert len([m for m in g32 if isinstance(m, torch.nn.ConvTranspose2d)]) == 4
    assert g32(torch.randn(2, 100, 1, 1)).shape == (2, 1, 32, 32)
    assert d32(torch.randn(2, 1, 32, 32)).shape == (2,)


def test_real_avatars_score_as_high_quality_and_noise_does_not(tmp_path) -> None:
    data = Avatars(tmp_path, size=48)
    assert len(data) == 48 and data[0].shape == (3, 64, 64)
    assert Avatars(tmp_path, size=48).images.equal(data.images)  # read back from the cache
    real = score_avatars(torch.stack([data[i] for i in range(48)]), data)
    assert real.confidence == 1.0 and real.modes >= 40 and real.modes_total == 240
    assert real.frechet < 1e-6  # the same images as the reference
    noise = score_avatars(torch.rand(48, 3, 64, 64) * 2 - 1, data)
    assert noise.confidence == 0.0 and noise.modes == 0 and noise.frechet > 1.0


def test_both_loops_train_on_the_avatars_set(tmp_path) -> None:
    data = Avatars(tmp_path, size=16)
    netG, wall = run_reference(data, seed=0, steps=1, batch=8)
    assert wall > 0 and netG(torch.randn(1, 100, 1, 1)).shape == (1, 3, 64, 64)
    module, _, trainer = run_gan_train(data, "--g-width 8 --d-width 8", seed=0, steps=1, batch=8,
                                       out=tmp_path / "run")
    assert module(torch.randn(1, module.config.z_dim)).shape == (1, 3, 64, 64)
    assert "D SN, biases" in describe(trainer.cfg.to_dict())


def test_the_shipped_digit_classifier_is_the_one_the_scores_were_made_with() -> None:
    import json

    from benchmarks.digits import CLASSIFIER, classifier_id, train_classifier

    _, accuracy = train_classifier()
    assert round(accuracy, 4) == 0.98  # the held-out sixth of the digits
    rows = [json.loads(line) for line in (CLASSIFIER.parent / "train_recipes.jsonl").read_text().splitlines()]
    assert classifier_id() in {r.get("classifier") for r in rows}


def _weights(module: torch.nn.Module) -> list[torch.Tensor]:
    # parameters only: the example samples in train mode, which moves its BN buffers (unused there)
    return [p.detach().clone() for p in module.parameters()]


def test_checks_score_the_steps_before_the_last_and_leave_both_loops_unchanged(tmp_path) -> None:
    data = Avatars(tmp_path, size=16)

    def score(images: torch.Tensor) -> ModeScore:
        return score_avatars(images, data)

    plain, _ = run_reference(data, seed=0, steps=4, batch=8, width=8)
    checks = Checks(every=2, samples=8, scorer=score)
    checked, wall = run_reference(data, seed=0, steps=4, batch=8, width=8, checks=checks)
    assert [c["step"] for c in checks.rows] == [2]  # step 4 is the run's own final score
    assert checks.rows[0]["samples"] == 8 and checks.rows[0]["frechet"] > 0
    assert 0 <= checks.rows[0]["wall_s"] <= wall and checks.spent > 0  # wall_s: 0.1 s steps
    assert all(a.equal(b) for a, b in zip(_weights(plain), _weights(checked), strict=True))

    flags = "--g-width 8 --d-width 8"
    plain_g, _, _ = run_gan_train(data, flags, seed=0, steps=3, batch=8, out=tmp_path / "a")
    checks = Checks(every=1, samples=8, scorer=score)
    checked_g, _, trainer = run_gan_train(data, flags, seed=0, steps=3, batch=8, out=tmp_path / "b",
                                          checks=checks)
    assert [c["step"] for c in checks.rows] == [1, 2]
    assert trainer.cfg.g_width == 8
    assert all(a.equal(b) for a, b in zip(_weights(plain_g), _weights(checked_g), strict=True))


def test_reached_names_the_first_check_at_the_mark_or_the_best_figure_short_of_it() -> None:
    row = {"steps": 3000, "confidence": 0.25, "wall_s": 900.0,
           "checks": [{"step": 1000, "confidence": 0.05, "wall_s": 300.0},
                      {"step": 2000, "confidence": 0.12, "wall_s": 600.0}]}
    assert reached(row, 0.1) == "2000 (600 s)"
    assert reached(row, 0.2) == "3000 (900 s)"  # the end counts
    assert reached(row, 0.5) == "not by 3000 (0.250)"


def test_width_names_itself_in_the_recipe_and_bad_check_options_exit_2(monkeypatch, capsys) -> None:
    assert describe({}, 32) == "pytorch/examples loop (fp32), width 32"
    assert describe({}) == "pytorch/examples loop (fp32)"
    for bad in (["--eval-every", "-1"], ["--eval-samples", "0"], ["--width", "0"]):
        monkeypatch.setattr("sys.argv", ["train_recipes.py", "run", "--set", "digits", *bad])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert "--eval-every >= 0" in capsys.readouterr().err


def test_a_run_stopped_after_its_checks_still_records_them(tmp_path, monkeypatch, capsys) -> None:
    import json
    import signal
    import sys

    from benchmarks import train_recipes

    data, calls = Avatars(tmp_path, size=16), []

    def scorer(images: torch.Tensor) -> ModeScore:
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C (or `kill PID`) during the third check
        return score_avatars(images, data)

    monkeypatch.setattr(train_recipes, "load_set", lambda name: (data, scorer, None))
    results = tmp_path / "results.jsonl"
    run = ["train_recipes.py", "run", "--set", "avatars", "--flags", "--g-width 8 --d-width 8",
           "--steps", "10", "--batch", "8", "--eval-every", "2", "--eval-samples", "8",
           "--results", str(results)]
    handler = signal.getsignal(signal.SIGTERM)
    try:
        monkeypatch.setattr(sys, "argv", run)
        main()
        assert signal.getsignal(signal.SIGTERM) is train_recipes._interrupt  # kill PID stops it the same way
        with pytest.raises(KeyboardInterrupt):
            train_recipes._interrupt(signal.SIGTERM, None)
        calls.clear()
        monkeypatch.setattr(sys, "argv", [*run[:-6], "--eval-every", "5", "--eval-samples", "8",
                                          "--results", str(results)])
        calls.extend([0, 0])  # the first check is the third call: stopped before any figure
        with pytest.raises(SystemExit, match="stopped before its first check"):
            main()
    finally:
        signal.signal(signal.SIGTERM, handler)
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert (row["stopped_after"], row["planned_steps"], row["steps"]) == (4, 10, 4)
    assert [c["step"] for c in row["checks"]] == [2] and row["samples"] == 8  # the last check: the row's
    assert row["config"]["g_width"] == 8 and row["events"] == [] and row["wall_s"] >= 0
    monkeypatch.setattr(sys, "argv", ["train_recipes.py", "table", "--results", str(results)])
    main()
    assert "width G 8 D 8 (stopped) | 4 x 8 |" in capsys.readouterr().out
