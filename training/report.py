"""The run report: loss and D-output curves (matplotlib, when installed) and report.html."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Trainer


def write_curves(trainer: Trainer) -> str | None:
    """report/curves.png from the logged history; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    h = trainer.history
    if not h:
        return None
    steps = [r["step"] for r in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot(steps, [r["d_loss"] for r in h], label="D loss")
    ax1.plot(steps, [r["g_loss"] for r in h], label="G loss")
    ax2.plot(steps, [r["d_real"] for r in h], label="D(x)")
    ax2.plot(steps, [r["d_fake"] for r in h], label="D(G(z))")
    for ax, title in ((ax1, "losses"), (ax2, "discriminator outputs")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    for e in trainer.events:
        ax1.axvline(e.step, color="red", alpha=0.3)
    fig.tight_layout()
    fig.savefig(trainer.run_dir / "curves.png", dpi=90)
    plt.close(fig)
    return "curves.png"


def write_report(trainer: Trainer) -> None:
    run = trainer.run_dir
    curves = write_curves(trainer)
    samples = sorted((run / "samples").glob("step_*.png")) if (run / "samples").is_dir() else []
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in trainer.cfg.to_dict().items())
    events = "".join(f"<li><b>{html.escape(e.kind)}</b> at step {e.step}: {html.escape(e.message)}</li>"
                     for e in trainer.events) or "<li>none</li>"
    grids = "".join(f'<figure><img src="samples/{p.name}"><figcaption>{p.stem}</figcaption></figure>'
                    for p in samples[-6:])
    page = f"""<!doctype html><meta charset="utf-8"><title>gan-train report</title>
<style>body{{font:14px system-ui;margin:2rem;max-width:1100px}} img{{image-rendering:pixelated}}
figure{{display:inline-block;margin:.5rem}} td{{padding:.1rem .6rem}}</style>
<h1>gan-train: {html.escape(str(run))}</h1>
<p>step {trainer.step} of {trainer.cfg.steps}; {trainer.rollbacks} rollbacks;
learning rates x{trainer.lr_scale:g}</p>
<h2>Health events</h2><ul>{events}</ul>
<h2>Curves</h2>{f'<img src="{curves}">' if curves else '<p>(install matplotlib for curves)</p>'}
<h2>Fixed-noise samples (seeds 0-63)</h2>{grids or '<p>none yet</p>'}
<h2>Configuration</h2><table>{rows}</table>
"""
    tmp = run / ".report.html.tmp"
    tmp.write_text(page)
    tmp.replace(run / "report.html")
