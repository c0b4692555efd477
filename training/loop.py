"""The training loop. One step, as in pytorch/examples' dcgan and the seed posts:

    fake = G(z)              # the generator's images, graph kept for the G step
    d_step(real, fake)       # D learns from D(real) and D(fake.detach()): the only detach
    g_step(fake)             # G learns through D(fake): never detached here (seed 003's bug)

plus EMA, resumable checkpoints, rollback on failure, and the health monitor wired in.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Collection
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from gan_serve import images as gimg
from gan_serve.arch import DCGANGenerator
from gan_serve.backends.torch_backend import slow_bf16_note
from gan_serve.errors import InputError
from gan_serve.fsutil import write_bytes_atomic
from gan_serve.generator import Generator
from gan_serve.health import health_check
from gan_serve.spec import LoadedModel, ModelSpec

from . import checkpoints as ck
from .augment import augment, parse_policy
from .config import TrainConfig, fade, resume_config, schedule_note
from .data import (
    AUGMENT_STREAM,
    CALIBRATION_STREAM,
    LATENT_STREAM,
    NOISE_STREAM,
    StepBatches,
    derived_seed,
    describe,
    load_dataset,
    probe,
)
from .distributed import World
from .losses import d_loss, d_loss_floor, g_loss, r1_penalty, top_k, verdict
from .models import build, frozen, generator_config, recalibrate_bn, update_ema
from .monitor import Event, Monitor, TrainingFailure, check_data_range, check_finite, check_g_gradient

Hook = Callable[["Trainer", int], None]  # called after every step's updates (tests provoke failures)
GRID_SEEDS = range(64)  # preview grids: `gan-serve generate --seed 0 --n 64` on the checkpoint


class _Rollback(Exception):
    """Unwinds the current segment after the state was restored from a healthy checkpoint."""


class Trainer:
    """One GAN run: `Trainer(cfg).train()`, or `Trainer(cfg, resume=True).train()` to continue
    the run in cfg.out bit for bit. Raises TrainingFailure when a failure stops it. `given`:
    the fields set on the command line, which cfg.recipe leaves alone (see with_recipe)."""

    def __init__(self, cfg: TrainConfig, dataset: Dataset | None = None, resume: bool = False,
                 echo: Callable[[str], None] = print, hooks: tuple[Hook, ...] = (),
                 given: Collection[str] | None = None) -> None:
        self.world, self.hooks, self.run_dir = World(), hooks, Path(cfg.out)
        self.echo = echo if self.world.main else (lambda message: None)
        self.resume_from = ck.latest_intact(self.run_dir, self.echo) if resume else None
        cfg = cfg.with_recipe(given)  # before resume: a resumed run's saved fields are resolved
        if self.resume_from is not None:  # the run's own config: the maths must not change
            saved = json.loads(ck.load_state(self.resume_from)["config"])
            cfg = resume_config(saved, cfg)
            if (note := schedule_note(saved, cfg)) is not None:
                self.echo(note)
        self.cfg = cfg = cfg.validate()
        self.device = self.world.device(cfg.device)
        self.dataset = dataset if dataset is not None else load_dataset(
            cfg.data, cfg.resolution, cfg.channels, cfg.dataset_size, cfg.max_image_pixels)
        self.data_label = cfg.data if dataset is None else f"{type(dataset).__name__} (Python)"
        self.policy = parse_policy(cfg.augment)
        self.G, self.D = (m.to(self.device) for m in build(cfg))
        if cfg.channels_last:
            self.G, self.D = (m.to(memory_format=torch.channels_last) for m in (self.G, self.D))
        self.G_ema = copy.deepcopy(self.G).eval() if cfg.ema > 0 else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        fp16 = cfg.precision == "fp16"  # bf16 needs no loss scaling; fp16 gradients underflow without
        self.scaler_g, self.scaler_d = (torch.amp.GradScaler(self.device.type, enabled=fp16) for _ in "gd")
        self.monitor = Monitor(cfg.window, cfg.warmup, d_loss_floor(cfg.loss, cfg.label_smoothing))
        self.step, self.lr_scale, self.rollbacks, self.tainted = 0, 1.0, 0, False
        self.best: dict | None = None  # {"step", "score", ...} of best.safetensors
        self.history: list[dict] = []  # one row per log_every steps (the curves)
        self.evals: list[dict] = []  # sample health per sample_every, coverage per checkpoint
        self.events: list[Event] = []
        self.world.start(self.device)
        self.G_train, self.D_train = self.world.wrap(self.G, self.D, cfg.sync_bn, self.device)
        self._check_gradient = True  # the first G step of every process checks G's gradient
        self.tb = None

    # -- the step ---------------------------------------------------------------------------
    def _autocast(self):  # noqa: ANN202
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def z_for(self, step: int, slot: int) -> torch.Tensor:
        """(batch, z_dim) latents of (step, slot): a pure function of the seed, so resume replays them."""
        g = torch.Generator().manual_seed(
            derived_seed(self.cfg.seed, LATENT_STREAM, step, slot, self.world.rank))
        return torch.randn(self.cfg.batch_size, self.cfg.z_dim, generator=g).to(self.device)

    def train_step(self, step: int, batches: object) -> dict[str, float]:
        """n_d D steps, then one G step on the last D step's fake images."""
        for k in range(self.cfg.n_d):
            real = next(batches).to(self.device, non_blocking=True)  # type: ignore[call-overload]
            if self.cfg.channels_last:
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
            self._fire(check_g_gradient(self.G, self.step, loss_has_graph=False))  # type: ignore[arg-type]
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

    # -- what gets served -------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        gcfg, cfg = generator_config(self.cfg), self.cfg
        seen = self.step * cfg.n_d * cfg.batch_size * self.world.size  # real images read
        return ModelSpec(arch="dcgan", config=gcfg.to_dict(), z_dim=gcfg.z_dim,
                         img_resolution=gcfg.img_resolution, channels=gcfg.channels,
                         training={"trainer": "gan-train", "step": self.step,
                                   "epoch": seen // len(self.dataset), "images_seen": seen,
                                   "data": describe(self.dataset, self.data_label),
                                   "ema": self.G_ema is not None, "healthy": not self.tainted,
                                   "events": [e.kind for e in self.events], "config": cfg.to_dict()})

    def served(self) -> Generator:
        """The generator exactly as gan-serve will load it: EMA weights in a fresh float32
        DCGANGenerator (BN statistics re-estimated for them), eval mode, recipe-v1 seeds."""
        cfg = self.cfg
        source = self.G_ema if self.G_ema is not None else self.G
        module = DCGANGenerator(generator_config(cfg))
        module.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
                                for k, v in source.state_dict().items()})
        if cfg.bn_calibration > 0:  # fixed latents: the same weights always give the same file
            g = torch.Generator().manual_seed(derived_seed(cfg.seed, CALIBRATION_STREAM))
            recalibrate_bn(module, torch.randn(cfg.bn_calibration * cfg.batch_size, cfg.z_dim, generator=g),
                           cfg.batch_size)
        return Generator(LoadedModel(module.eval(), self.spec(), "gan-train", "0" * 64, "training"))

    # -- the run ----------------------------------------------------------------------------
    def train(self) -> Path:
        """Train to cfg.steps and return the run folder; raises TrainingFailure to stop."""
        self._open_run()
        try:
            self._check_data()
            while self.step < self.cfg.steps:
                try:
                    self._segment()
                except _Rollback:
                    continue
        finally:
            self._report()
            if self.tb is not None:
                self.tb.close()
        return self.run_dir

    def _open_run(self) -> None:
        from .report import open_tensorboard

        if self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ck.clean_stale(self.run_dir)
        self.world.barrier()
        if self.resume_from is not None:
            self.restore(self.resume_from)
            ck.repair_best(self.run_dir, self.best)
            self.echo(f"resumed {self.run_dir} at step {self.step} ({self.resume_from.name})")
        elif (found := ck.latest(self.run_dir)) is not None:
            raise InputError(f"{str(self.run_dir)!r} already holds a run (checkpoint {found.name}); "
                             "pass --resume to continue it, or choose another --out")
        elif self.cfg.init_from:
            self.echo(f"starting from {ck.init_weights(self, Path(self.cfg.init_from))} "
                      "(step 0, fresh optimizers)")
        self.tb = open_tensorboard(self.run_dir) if self.cfg.tensorboard and self.world.main else None
        self.echo(f"data {describe(self.dataset, self.data_label)}; "
                  f"G {generator_config(self.cfg).describe()}; "
                  f"training to step {self.cfg.steps} on {self.device} ({self.world.size} process(es))")
        if (note := slow_bf16_note(self.device.type, self.cfg.precision)) is not None:
            self.echo(note)

    def _check_data(self) -> None:
        """Before the first step: the data range, and the real diversity collapse is judged by."""
        sample = probe(self.dataset, self.cfg.seed)
        if (event := check_data_range(sample)) is not None:
            self._fire(event)
        self.monitor.set_reference(gimg.to_uint8(sample[:64].float().numpy()))

    def _segment(self) -> None:
        """Steps from self.step to the end (a rollback ends a segment early)."""
        from tqdm import tqdm

        cfg = self.cfg
        sampler = StepBatches(len(self.dataset), cfg.batch_size, cfg.seed, self.step, cfg.steps, cfg.n_d,
                              self.world.rank, self.world.size)
        batches = iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.workers,
                                  pin_memory=self.device.type == "cuda"))
        self._clock = (self.step, time.perf_counter())
        with tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True,
                  disable=not self.world.main or None) as bar:
            for step in range(self.step, cfg.steps):
                self.step = step
                self._set_lr(step)
                m = self.train_step(step, batches)
                for hook in self.hooks:
                    hook(self, step)
                m = dict(zip(m, self.world.mean(list(m.values())), strict=True))  # same numbers everywhere
                bar.update(1)
                bar.set_postfix_str(f"D {m['d_loss']:.3f}  G {m['g_loss']:.3f}  D(x) {m['d_real']:.2f}  "
                                    f"D(G(z)) {m['d_fake']:.2f}", refresh=False)
                self._after_step(step, m)
            self.step = cfg.steps

    def _after_step(self, step: int, m: dict[str, float]) -> None:
        cfg, done = self.cfg, step + 1
        self.monitor.record(m["d_loss"], m["g_loss"], m["d_fake"])
        ckpt = done % cfg.ckpt_every == 0 or done == cfg.steps
        weights = (self.G, self.D) if ckpt or done % cfg.log_every == 0 else ()
        losses = {"D loss": m["d_loss"], "G loss": m["g_loss"]}
        for event in (check_finite(step, losses, *weights), self.monitor.check_domination(step),
                      self.monitor.check_d_constant(step, m["d_std"], m["d_mean"])):
            if event is not None:
                self._fire(event)
        if done % cfg.log_every == 0 or done == cfg.steps:
            self._log(done, m)
        if done % cfg.sample_every == 0 or done == cfg.steps:
            self._samples(done)
        if ckpt:
            self.step = done
            self.checkpoint()

    def _log(self, done: int, m: dict[str, float]) -> None:
        import sys

        last_step, last_time = self._clock
        now = time.perf_counter()
        rate = (done - last_step) * self.cfg.batch_size * self.world.size / max(now - last_time, 1e-9)
        self._clock = (done, now)
        row = {"step": done, **{k: m[k] for k in ("d_loss", "g_loss", "d_real", "d_fake")},
               "lr_scale": self.lr_factor(done - 1), "images_per_s": rate}
        self.history.append(row)
        if self.tb is not None:
            for key, value in row.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, done)
        if not sys.stderr.isatty():  # no live bar in a log file: a line instead
            self.echo(f"step {done}/{self.cfg.steps}  D {m['d_loss']:.3f}  G {m['g_loss']:.3f}  "
                      f"D(x) {m['d_real']:.2f}  D(G(z)) {m['d_fake']:.2f}  {rate:.0f} img/s")

    def _samples(self, done: int) -> None:
        """The fixed-noise grid (rank 0 writes it) and the sample-based health checks."""
        events = None
        if self.world.main:
            fake = self.served().generate(GRID_SEEDS)
            samples = self.run_dir / "samples"
            samples.mkdir(exist_ok=True)
            write_bytes_atomic(samples / f"step_{done:07d}.png", gimg.encode_image(gimg.make_grid(fake)))
            health = health_check(fake)
            self.evals.append({"step": done, "diversity": health.mean_pairwise_distance,
                               "duplicates": health.duplicate_share, "black": health.black_share,
                               "saturated": health.saturated_share, "flat": health.constant_share})
            events = [e.to_dict() for e in self.monitor.check_samples(done, health)]
        for e in self.world.share(events):  # type: ignore[union-attr]
            self._fire(Event(**e))

    # -- checkpoints, best, failures ---------------------------------------------------------
    def checkpoint(self) -> Path | None:
        """Score, save (rank 0) and promote to best.safetensors when healthy and best so far."""
        from .evaluate import score

        self.world.check_in_sync(self.G, self.D)
        served, result = self.served(), None
        if self.world.main:
            result = score(self, served)
        result = self.world.share(result)
        for e in result["events"]:  # type: ignore[index]
            self._fire(Event(**e))  # a rollback here unwinds before anything is saved
        metrics = {"step": self.step, **result["metrics"], "score": result["score"]}  # type: ignore[index]
        if metrics.keys() - {"step", "score"}:
            self.evals.append(metrics)
        is_best = not self.tainted and (self.best is None or metrics["score"] >= self.best["score"])
        if is_best:
            self.best = metrics
        folder = None
        if self.world.main:
            served = self.served()  # its spec records whether this checkpoint is healthy
            folder = ck.save(self.run_dir, self.step, served.module, served.spec, ck.trainer_state(self),
                             self.cfg.keep)
            if is_best:
                ck.promote_best(self.run_dir, folder, self.best)
            self._report()
        self.world.barrier()
        self.monitor.fired.clear()
        return folder

    def _fire(self, event: Event) -> None:
        if not event.fatal and event.kind in self.monitor.fired:
            return  # each kind is said once per checkpoint interval
        self.monitor.fired.add(event.kind)
        self.events.append(event)
        self.echo(f"[{event.kind}] step {event.step}: {event.message}")
        if self.world.main:
            with open(self.run_dir / "events.jsonl", "a") as fh:
                fh.write(json.dumps(event.to_dict()) + "\n")
            if self.tb is not None:
                self.tb.add_text(f"events/{event.kind}", event.message, event.step)
        if event.fatal or self.cfg.on_failure == "stop":
            raise TrainingFailure(event)
        self.tainted = True  # no checkpoint written from here on counts as best
        if self.cfg.on_failure == "rollback" or event.kind == "nan":  # NaN cannot be trained through
            self._rollback(event)

    def _rollback(self, event: Event) -> None:
        folder = ck.latest(self.run_dir, healthy_only=True)
        if folder is None or self.rollbacks >= self.cfg.max_rollbacks:
            why = "no healthy checkpoint yet" if folder is None else f"{self.rollbacks} rollbacks already"
            stop = f"{event.message}. Stopping: {why}"
            raise TrainingFailure(Event(event.step, event.kind, stop, fatal=True))
        seen, best, count, scale = self.events, self.best, self.rollbacks + 1, self.lr_scale * 0.5
        self.restore(folder)
        # what happened stays in the log, best.safetensors stays, rollbacks keep counting and halving
        self.events, self.best, self.rollbacks, self.lr_scale = seen, best, count, scale
        self.monitor.fired.clear()
        self.monitor.load({})  # judge the lowered lr on its own steps, not the window that just fired
        self.echo(f"rolled back to step {self.step} ({folder.name}); learning rates x{scale:g}")
        raise _Rollback

    def restore(self, folder: Path) -> None:
        ck.restore_trainer(self, ck.load_state(folder))

    def _report(self) -> None:
        if self.world.main and self.run_dir.is_dir():
            from .report import write_report

            write_report(self)
