"""The maths of one training step, as in pytorch/examples' dcgan and the seed posts:

    fake = G(z)                       # the generator's images, graph kept for the G step
    d_step(..., real, fake.detach())  # D learns from D(real) and D(fake.detach()): the only detach
    g_step(..., fake)                 # G learns through D(fake): never detached (seed 003's bug)

plus EMA, R1, PacGAN packs, instance noise, top-k and the learning rates. `train_step` is the
step, top to bottom; every function takes what it reads as arguments: `Nets` (what the step
updates) and `StepSetup` (how every step of the run runs). The Trainer (loop.py) owns the run
around the steps.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .augment import augment
from .config import TrainConfig, fade
from .data import AUGMENT_STREAM, LATENT_STREAM, NOISE_STREAM, derived_seed
from .distributed import World
from .losses import d_loss, g_loss, r1_penalty, top_k, verdict
from .models import build, frozen, update_ema
from .monitor import Event, check_g_gradient


@dataclass(frozen=True)
class StepSetup:
    """How every step of a run runs: its config and what was resolved for this process."""

    cfg: TrainConfig
    device: torch.device
    rank: int  # this process's rank: its latents, noise and augmentations are its own
    precision: str  # fp32, bf16 or fp16: --precision with auto resolved for this machine
    channels_last: bool
    policy: tuple[str, ...]  # DiffAugment's transforms (augment.parse_policy), empty: none


@dataclass
class Nets:
    """What the steps update: G and D, the modules a step runs (their DDP wrappers under
    torchrun, else G and D themselves), the EMA of G, and an optimizer and a loss scaler each."""

    G: nn.Module
    D: nn.Module
    G_train: nn.Module
    D_train: nn.Module
    G_ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler

    @classmethod
    def build(cls, setup: StepSetup, world: World) -> Nets:
        """DCGAN-initialised G and D of setup.cfg (models.build) on setup.device, fresh Adams."""
        cfg = setup.cfg
        G, D = (m.to(setup.device) for m in build(cfg))
        if setup.channels_last:
            G, D = (m.to(memory_format=torch.channels_last) for m in (G, D))
        G_ema = copy.deepcopy(G).eval() if cfg.ema > 0 else None
        opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        fp16 = setup.precision == "fp16"  # bf16 needs no loss scaling; fp16 gradients underflow without
        scaler_g, scaler_d = (torch.amp.GradScaler(setup.device.type, enabled=fp16) for _ in "gd")
        G_train, D_train = world.wrap(G, D, cfg.sync_bn, setup.device)
        return cls(G, D, G_train, D_train, G_ema, opt_g, opt_d, scaler_g, scaler_d)

    def state_dict(self) -> dict:
        """The weights, the EMA ({} without one), the optimizers and the scalers, by name."""
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else {},
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        """Back to what `state_dict` gave."""
        self.load_weights(s)
        for name in ("opt_g", "opt_d", "scaler_g", "scaler_d"):
            getattr(self, name).load_state_dict(s[name])

    def load_weights(self, s: dict) -> None:
        """G, D (when given) and the EMA (G's weights when the state has none)."""
        self.G.load_state_dict(s["G"])
        if s.get("D"):
            self.D.load_state_dict(s["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(s.get("G_ema") or s["G"])


def train_step(nets: Nets, setup: StepSetup, step: int, batches: Iterator[torch.Tensor],
               check_gradient: bool) -> tuple[dict[str, float], Event | None]:
    """n_d D steps, then one G step on the last D step's fake images, then the EMA. Returns the
    step's numbers, or the event that stops the run (with check_gradient: G got no gradient)."""
    cfg = setup.cfg
    for k in range(cfg.n_d):
        real = next(batches).to(setup.device, non_blocking=True)  # (B, C, R, R) in [-1, 1]
        if setup.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(k == cfg.n_d - 1), autocast(setup):  # only the last trains G
            fake = nets.G_train(z_for(setup, step, k))  # (B, C, R, R)
        d = d_step(nets, setup, step, real, fake.detach())  # the only detach: D's update must not reach G
    g, event = g_step(nets, setup, step, fake, check_gradient)  # no detach: G learns through D
    if event is not None:
        return {}, event
    if nets.G_ema is not None:
        # an EMA loaded by --init-from is warm; a new one averages over its first steps only
        warm = cfg.ema if cfg.init_from else (1 + step) / (10 + step)
        update_ema(nets.G_ema, nets.G, min(cfg.ema, warm))
    return {**d, **g}, None


def autocast(setup: StepSetup) -> AbstractContextManager:
    if setup.precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if setup.precision == "bf16" else torch.float16
    return torch.autocast(setup.device.type, dtype=dtype)


def z_for(setup: StepSetup, step: int, slot: int) -> torch.Tensor:
    """(batch, z_dim) latents of (step, slot): a pure function of the seed, so resume replays them."""
    cfg = setup.cfg
    g = torch.Generator().manual_seed(derived_seed(cfg.seed, LATENT_STREAM, step, slot, setup.rank))
    return torch.randn(cfg.batch_size, cfg.z_dim, generator=g).to(setup.device)


def judge(setup: StepSetup, D: nn.Module, images: torch.Tensor, step: int, slot: int) -> torch.Tensor:
    """D's logits for `images` at `step`, with the instance noise of (step, slot) added and packs
    of `pack` images stacked on the channel axis (PacGAN)."""
    cfg = setup.cfg
    sigma = cfg.instance_noise * fade(step, 0, cfg.instance_noise_steps or cfg.steps)
    if sigma > 0:  # a pure function of (seed, step, slot): resume replays it
        g = torch.Generator().manual_seed(derived_seed(cfg.seed, NOISE_STREAM, step, slot, setup.rank))
        images = images + sigma * torch.randn(images.shape, generator=g).to(images.device, images.dtype)
    if setup.policy:  # DiffAugment: a pure function of (seed, step, slot) like the noise
        g = torch.Generator().manual_seed(derived_seed(cfg.seed, AUGMENT_STREAM, step, slot, setup.rank))
        images = augment(images, setup.policy, g)
    if cfg.pack > 1:
        b, c, h, w = images.shape
        images = images.reshape(b // cfg.pack, cfg.pack * c, h, w)
    return D(images)


def d_step(nets: Nets, setup: StepSetup, step: int, real: torch.Tensor,
           fake: torch.Tensor) -> dict[str, float]:
    """One update of D on real and (detached) fake images."""
    cfg = setup.cfg
    r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0  # lazy R1: every r1_every steps
    real.requires_grad_(r1)  # R1 differentiates D(real) w.r.t. the pixels
    with autocast(setup):
        out_real = judge(setup, nets.D_train, real, step, 0)  # (B / pack,) raw logits
        out_fake = judge(setup, nets.D_train, fake, step, 1)
        loss = d_loss(out_real.float(), out_fake.float(), cfg.loss, cfg.label_smoothing)
    if r1:
        loss = loss + r1_penalty(out_real, real, cfg.r1_gamma * cfg.r1_every)
    nets.opt_d.zero_grad(set_to_none=True)
    nets.scaler_d.scale(loss).backward()
    nets.scaler_d.step(nets.opt_d)
    nets.scaler_d.update()
    logits = torch.cat([out_real, out_fake]).detach().float()
    v_real, v_fake = (verdict(o.detach().float(), cfg.loss).mean() for o in (out_real, out_fake))
    stats = torch.stack([loss.detach(), v_real, v_fake, logits.std(), logits.mean()]).tolist()
    return dict(zip(("d_loss", "d_real", "d_fake", "d_std", "d_mean"), stats, strict=True))


def g_step(nets: Nets, setup: StepSetup, step: int, fake: torch.Tensor,
           check_gradient: bool) -> tuple[dict[str, float], Event | None]:
    """One update of G through D(fake); with check_gradient (a process's first G step) the
    update is made only if G got a gradient, else the event that says so comes back."""
    cfg = setup.cfg
    with frozen(nets.D), autocast(setup):  # D's weights get no gradient here; D's input does
        loss = g_loss(top_k(judge(setup, nets.D, fake, step, 2).float(), cfg.top_k), cfg.loss)
    if check_gradient and not loss.requires_grad:  # nothing in the loss depends on any weight at all
        return {}, check_g_gradient(nets.G, step, loss_has_graph=False)
    nets.opt_g.zero_grad(set_to_none=True)
    nets.scaler_g.scale(loss).backward()
    if check_gradient and (event := check_g_gradient(nets.G, step)) is not None:
        return {}, event
    nets.scaler_g.step(nets.opt_g)
    nets.scaler_g.update()
    return {"g_loss": loss.item()}, None


def set_lr(nets: Nets, cfg: TrainConfig, factor: float) -> None:
    """Both optimizers at their configured rates times `factor` (Trainer.lr_factor)."""
    for opt, lr in ((nets.opt_g, cfg.lr_g), (nets.opt_d, cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * factor
