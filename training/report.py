"""The run report: curves.png (matplotlib, Agg) and report.html tying curves, sample grids,
health events and the configuration together. Both are drawn from a RunSummary: numbers and
lists that the Trainer hands over, no networks."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from gan_serve.extras import install_command
from gan_serve.fsutil import atomic_path, write_bytes_atomic

from .config import TrainConfig
from .monitor import Event


@dataclass
class RunSummary:
    run_dir: Path
    cfg: TrainConfig
    step: int
    rollbacks: int
    lr_scale: float
    data: str  # the data set, described
    history: list[dict]  # the metrics.jsonl rows
    evals: list[dict]  # sample health per check, scores per checkpoint
    events: list[Event]  # failures, and sightings that did not count (Event.note)
    best: dict | None
    real_diversity: float | None  # mean pairwise distance of real images (the collapse yardstick)


def _plt():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def write_curves(summary: RunSummary) -> str | None:
    """curves.png: losses, D's verdicts, and sample diversity or mode coverage; None without
    matplotlib (the train extra) or before the first log row."""
    plt, h = _plt(), summary.history
    if plt is None or not h:
        return None
    steps = [r["step"] for r in h]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    axes[0].plot(steps, [r["d_loss"] for r in h], label="D loss")
    axes[0].plot(steps, [r["g_loss"] for r in h], label="G loss")
    axes[1].plot(steps, [r["d_real"] for r in h], label="D(x)")
    axes[1].plot(steps, [r["d_fake"] for r in h], label="D(G(z))")
    axes[1].set_ylim(-0.02, 1.02)
    coverage = [e for e in summary.evals if "coverage" in e]
    samples = [e for e in summary.evals if "diversity" in e]
    if coverage:
        for key, label in (("coverage", "modes covered"), ("high_quality", "good samples")):
            axes[2].plot([e["step"] for e in coverage], [e[key] for e in coverage], "o-", label=label)
        axes[2].set_title("builtin:avatars metric")
    elif samples:
        axes[2].plot([e["step"] for e in samples], [e["diversity"] for e in samples], "o-",
                     label="fixed-noise diversity")
        if summary.real_diversity is not None:
            axes[2].axhline(summary.real_diversity, color="gray", ls="--", label="real diversity")
        axes[2].set_title("sample diversity")
    for ax, title in ((axes[0], "losses"), (axes[1], "discriminator verdicts")):
        ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
        for e in summary.events:
            ax.axvline(e.step, color="red" if e.counted else "orange", alpha=0.3)
    fig.tight_layout()
    with atomic_path(summary.run_dir / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return "curves.png"


def _rows(d: dict) -> str:
    cells = (f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in d.items())
    return "".join(cells)


def write_report(summary: RunSummary) -> Path:
    """report.html in the run folder (rewritten at every checkpoint and at the end)."""
    run, cfg = summary.run_dir, summary.cfg
    curves = write_curves(summary)
    samples = sorted((run / "samples").glob("step_*.png")) if (run / "samples").is_dir() else []
    events = "".join(f"<li><b>{html.escape(e.kind)}</b> at step {e.step}: {html.escape(e.message)}</li>"
                     for e in summary.events if e.counted) or "<li>none</li>"
    seen = "".join(f"<li><b>{html.escape(e.kind.replace('_', ' '))}</b> seen at step {e.step}, "
                   f"{html.escape(e.note)} (not counted): {html.escape(e.message)}</li>"
                   for e in summary.events if not e.counted) or "<li>none</li>"
    grids = "".join(f'<figure><img src="samples/{p.name}"><figcaption>{p.stem}</figcaption></figure>'
                    for p in samples[-6:])
    rate = summary.history[-1]["images_per_s"] if summary.history else 0.0
    best = _rows(summary.best) if summary.best else "<tr><td>none yet</td></tr>"
    no_curves = f"<p>(curves need matplotlib: {html.escape(install_command('train'))})</p>"
    page = f"""<!doctype html><meta charset="utf-8"><title>gan-train report</title>
<style>body{{font:14px system-ui;margin:2rem;max-width:1200px}}
img{{image-rendering:pixelated;max-width:100%}}
figure{{display:inline-block;margin:.5rem}} td{{padding:.1rem .6rem}} li{{margin:.3rem 0}}</style>
<h1>gan-train: {html.escape(str(run))}</h1>
<p>step {summary.step} of {cfg.steps}; {rate:.0f} images/s; {summary.rollbacks} rollback(s); learning
rates x{summary.lr_scale:g}; data {html.escape(summary.data)}</p>
<h2>Health events</h2><ul>{events}</ul>
<h2>Seen by the checks, not counted (inside the warm-up, or not persistent)</h2><ul>{seen}</ul>
<h2>Best checkpoint (best.safetensors)</h2><table>{best}</table>
<h2>Curves</h2>{f'<img src="{curves}">' if curves else no_curves}
<h2>Fixed-noise samples: seeds 0-63, as <code>gan-serve generate --seed 0 --n 64</code></h2>
{grids or '<p>none yet</p>'}
<h2>Configuration</h2><table>{_rows(cfg.to_dict())}</table>
"""
    return write_bytes_atomic(run / "report.html", page.encode())
