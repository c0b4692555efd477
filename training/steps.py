"""The maths of one training step, as in pytorch/examples' dcgan and the seed posts:

    fake = G(z)              # the generator's images, graph kept for the G step
    d_step(real, fake)       # D learns from D(real) and D(fake.detach()): the only detach
    g_step(fake)             # G learns through D(fake): never detached here (seed 003's bug)

plus EMA, R1, PacGAN packs, instance noise, top-k and the learning-rate schedule. The Trainer
(loop.py) owns the networks, optimizers and the run around these steps.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from .augment import augment
from .config import TrainConfig, fade
from .data import AUGMENT_STREAM, LATENT_STREAM, NOISE_STREAM, derived_seed
from .distributed import World
from .losses import d_loss, g_loss, r1_penalty, top_k, verdict
from .models import frozen, update_ema
from .monitor import Event, check_g_gradient


class Steps:
    """The step maths of a Trainer, which sets the attributes annotated here."""

    cfg: TrainConfig
    world: World
    device: torch.device
    precision: str  # fp32, bf16 or fp16: --precision with auto resolved for this machine
    channels_last: bool
    policy: list[str]  # DiffAugment's transforms (augment.parse_policy), empty: none
    G: torch.nn.Module
    D: torch.nn.Module
    G_train: torch.nn.Module  # G and D as the step runs them (DDP-wrapped under torchrun)
    D_train: torch.nn.Module
    G_ema: torch.nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    step: int
    lr_scale: float
    _check_gradient: bool

    def _fire(self, event: Event) -> None:
        raise NotImplementedError

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def z_for(self, step: int, slot: int) -> torch.Tensor:
        """(batch, z_dim) latents of (step, slot): a pure function of the seed, so resume replays them."""
        g = torch.Generator().manual_seed(
            derived_seed(self.cfg.seed, LATENT_STREAM, step, slot, self.world.rank))
        return torch.randn(self.cfg.batch_size, self.cfg.z_dim, generator=g).to(self.device)

    def train_step(self, step: int, batches: object) -> dict[str, float]:
        """n_d D steps, then one G step on the last D step's fake images."""
        for k in range(self.cfg.n_d):
            real = next(batches).to(self.device, non_blocking=True)
            if self.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            with torch.set_grad_enabled(k == self.cfg.n_d - 1), self._autocast():  # only the last trains G
                fake = self.G_train(self.z_for(step, k))  # (B, C, R, R)
            d = self.d_step(real, fake)
        return {**d, **self.g_step(fake)}

    def lr_factor(self, step: int) -> float:
        """The learning rates at `step` over the configured ones: rollbacks halve them, and from
        --lr-decay-from they fall linearly to 0 at the last step. A function of the step and the
        saved rollbacks, so a resumed run has the same rates."""
        cfg = self.cfg
        return self.lr_scale * (fade(step, cfg.lr_decay_from, cfg.steps) if cfg.lr_decay_from else 1.0)

    def _set_lr(self, step: int) -> None:
        factor = self.lr_factor(step)
        for opt, lr in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def judge(self, D: torch.nn.Module, images: torch.Tensor, slot: int) -> torch.Tensor:
        """D's logits for `images`, with the instance noise of (step, slot) added and packs of
        `pack` images stacked on the channel axis (PacGAN)."""
        cfg = self.cfg
        sigma = cfg.instance_noise * fade(self.step, 0, cfg.instance_noise_steps or cfg.steps)
        if sigma > 0:  # a pure function of (seed, step, slot): resume replays it
            g = torch.Generator().manual_seed(derived_seed(cfg.seed, NOISE_STREAM, self.step, slot,
                                                           self.world.rank))
            images = images + sigma * torch.randn(images.shape, generator=g).to(images.device, images.dtype)
        if self.policy:  # DiffAugment: a pure function of (seed, step, slot) like the noise
            g = torch.Generator().manual_seed(derived_seed(cfg.seed, AUGMENT_STREAM, self.step, slot,
                                                           self.world.rank))
            images = augment(images, self.policy, g)
        if cfg.pack > 1:
            b, c, h, w = images.shape
            images = images.reshape(b // cfg.pack, cfg.pack * c, h, w)
        return D(images)

    def d_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0  # lazy R1: every r1_every steps
        real.requires_grad_(r1)  # R1 differentiates D(real) w.r.t. the pixels
        with self._autocast():
            out_real = self.judge(self.D_train, real, 0)  # (B / pack,) raw logits
            # the only detach: D's update must not reach G
            out_fake = self.judge(self.D_train, fake.detach(), 1)
            loss = d_loss(out_real.float(), out_fake.float(), cfg.loss, cfg.label_smoothing)
        if r1:
            loss = loss + r1_penalty(out_real, real, cfg.r1_gamma * cfg.r1_every)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        logits = torch.cat([out_real, out_fake]).detach().float()
        v_real, v_fake = (verdict(o.detach().float(), cfg.loss).mean() for o in (out_real, out_fake))
        stats = torch.stack([loss.detach(), v_real, v_fake, logits.std(), logits.mean()]).tolist()
        return dict(zip(("d_loss", "d_real", "d_fake", "d_std", "d_mean"), stats, strict=True))

    def g_step(self, fake: torch.Tensor) -> dict[str, float]:
        with frozen(self.D), self._autocast():  # D's weights get no gradient here; D's input does
            # no detach: G learns through D
            loss = g_loss(top_k(self.judge(self.D, fake, 2).float(), self.cfg.top_k), self.cfg.loss)
        first, self._check_gradient = self._check_gradient, False
        if first and not loss.requires_grad:  # nothing in the loss depends on any weight at all
            self._fire(check_g_gradient(self.G, self.step, loss_has_graph=False))
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        if first and (event := check_g_gradient(self.G, self.step)) is not None:
            self._fire(event)
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        if self.G_ema is not None:
            # an EMA loaded by --init-from is warm; a new one averages over its first steps only
            warm = self.cfg.ema if self.cfg.init_from else (1 + self.step) / (10 + self.step)
            update_ema(self.G_ema, self.G, min(self.cfg.ema, warm))
        return {"g_loss": loss.item()}
