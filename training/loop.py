"""The training loop: d_step and g_step (the detach rule lives in one visible place),
EMA, checkpoints, resume, rollback, and the health monitor wired in."""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gan_serve import latents as lat
from gan_serve.generator import Generator
from gan_serve.spec import LoadedModel, ModelSpec

from . import checkpoints as ck
from .config import TrainConfig
from .data import StepBatches, describe, load_dataset
from .losses import d_loss, g_loss, r1_penalty
from .models import build, generator_config
from .monitor import Event, Monitor, TrainingFailure, check_data_range, check_finite, check_g_gradient

Hook = Callable[["Trainer", int], None]  # called after every step (tests provoke failures here)


class _Rollback(Exception):
    pass


class Trainer:
    def __init__(self, cfg: TrainConfig, dataset: Dataset | None = None,
                 echo: Callable[[str], None] = print, hooks: tuple[Hook, ...] = ()) -> None:
        self.cfg, self.echo, self.hooks = cfg.validate(), echo, hooks
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                                   else "cpu" if cfg.device == "auto" else cfg.device)
        self.run_dir = Path(cfg.out)
        self.dataset = dataset if dataset is not None else load_dataset(
            cfg.data, cfg.resolution, cfg.channels, cfg.dataset_size)
        self.data_label = cfg.data if dataset is None else f"{type(dataset).__name__} (Python)"
        self.G, self.D = (m.to(self.device) for m in build(cfg))
        if cfg.channels_last:
            self.G, self.D = (m.to(memory_format=torch.channels_last) for m in (self.G, self.D))
        self.G_ema = copy.deepcopy(self.G).eval() if cfg.ema > 0 else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.monitor = Monitor(cfg.window, cfg.warmup)
        self.step, self.lr_scale, self.rollbacks, self.best = 0, 1.0, 0, -1.0
        self.history: list[dict] = []
        self.events: list[Event] = []
        self.G_train, self.D_train = self._distribute()
        self._first_g_step = True

    # -- setup --------------------------------------------------------------------------
    def _distribute(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        if self.world == 1:
            return self.G, self.D
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        G, D = self.G, self.D
        if self.cfg.sync_bn:
            G, D = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in (G, D))
        return DDP(G), DDP(D)  # separate wrappers: G's and D's backward passes stay apart

    def _autocast(self):  # noqa: ANN202
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def z_for(self, step: int, slot: int) -> torch.Tensor:
        """The latents of (step, slot): a pure function of the seed, so resume replays them."""
        g = torch.Generator().manual_seed(((self.cfg.seed * 1_000_003 + step) * 16 + slot) * 97 + self.rank)
        return torch.randn(self.cfg.batch_size, self.cfg.z_dim, generator=g).to(self.device)

    # -- the two steps ------------------------------------------------------------------
    def fake(self, z: torch.Tensor) -> torch.Tensor:
        return self.G_train(z)

    def d_step(self, real: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        fake = self.fake(z).detach()  # the only detach: D's update must not reach G's weights
        with self._autocast():
            out_real, out_fake = self.D_train(real), self.D_train(fake)
            loss = d_loss(out_real.float(), out_fake.float(), self.cfg.loss, self.cfg.label_smoothing)
        if self.cfg.r1_gamma > 0:
            loss = loss + r1_penalty(self.D_train, real, self.cfg.r1_gamma)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self._d_logits = torch.cat([out_real, out_fake]).detach().float()
        return {"d_loss": loss.item(), "d_real": torch.sigmoid(out_real.float()).mean().item(),
                "d_fake": torch.sigmoid(out_fake.float()).mean().item()}

    def g_step(self, z: torch.Tensor) -> dict[str, float]:
        fake = self.fake(z)  # no detach here: G learns through D's judgement of its images
        with self._autocast():
            loss = g_loss(self.D_train(fake).float(), self.cfg.loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if self._first_g_step:
            self._first_g_step = False
            if (event := check_g_gradient(self.G, self.step)) is not None:
                self._fire(event)
        self.opt_g.step()
        self._update_ema()
        return {"g_loss": loss.item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))  # short runs still move
        for e, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            e.copy_(b)

    # -- serving view -------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        cfg = generator_config(self.cfg)
        return ModelSpec(arch="dcgan", config=cfg.to_dict(), z_dim=cfg.z_dim,
                         img_resolution=cfg.img_resolution, channels=cfg.channels,
                         training={"step": self.step, "epoch": self.step * self.cfg.batch_size * self.world
                                   // max(len(self.dataset), 1),
                                   "data": describe(self.dataset, self.data_label),
                                   "config": self.cfg.to_dict(), "events": len(self.events)})

    def served(self) -> Generator:
        """The generator as gan-serve will see it (EMA weights, eval mode, recipe-v1 seeds)."""
        module = copy.deepcopy(self.G_ema if self.G_ema is not None else self.G).float().cpu().eval()
        return Generator(LoadedModel(module, self.spec(), "training", "0" * 64, "training"))

    # -- the loop -----------------------------------------------------------------------
    def train(self, resume: bool = False) -> Path:
        """Train to cfg.steps; returns the run folder. Raises TrainingFailure to stop."""
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and (folder := ck.latest(self.run_dir)) is not None:
            self.restore(folder)
            self.echo(f"resumed from {folder} (step {self.step})")
        elif resume:
            self.echo(f"nothing to resume in {self.run_dir}; starting fresh")
        self.echo(f"data {describe(self.dataset, self.data_label)}; training to step {self.cfg.steps}")
        while self.step < self.cfg.steps:
            try:
                self._segment()
            except _Rollback:
                continue
        self._report()
        return self.run_dir

    def _segment(self) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        sampler = StepBatches(len(self.dataset), cfg.batch_size, cfg.seed, self.step, cfg.steps,
                              cfg.n_d, self.rank, self.world)
        batches = iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.workers))
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", disable=self.rank != 0 or None,
                   dynamic_ncols=True)
        try:
            for step in range(self.step, cfg.steps):
                self.step = step
                for k in range(cfg.n_d):
                    real = next(batches).to(self.device)
                    if step == 0 and k == 0 and (event := check_data_range(real)) is not None:
                        self._fire(event)
                    d = self.d_step(real, self.z_for(step, k))
                g = self.g_step(self.z_for(step, 15))
                for hook in self.hooks:
                    hook(self, step)
                self._after_step(step, {**d, **g}, real)
                bar.update(1)
                bar.set_postfix(D=f"{d['d_loss']:.3f}", G=f"{g['g_loss']:.3f}", Dx=f"{d['d_real']:.2f}",
                                DGz=f"{d['d_fake']:.2f}", refresh=False)
            self.step = cfg.steps
        finally:
            bar.close()

    def _after_step(self, step: int, m: dict[str, float], real: torch.Tensor) -> None:
        cfg, done = self.cfg, step + 1
        self.monitor.record(m["d_loss"], m["g_loss"], m["d_fake"])
        weights = (self.G, self.D) if done % cfg.log_every == 0 else ()
        for event in (check_finite(step, m, *weights), self.monitor.check_domination(step),
                      self.monitor.check_d_constant(step, self._d_logits)):
            if event is not None:
                self._fire(event)
        if done % cfg.log_every == 0:
            self.history.append({"step": done, **m, "lr_scale": self.lr_scale, "time": time.time()})
            if self.rank == 0 and not sys.stderr.isatty():  # no live bar in logs: a line instead
                self.echo(f"step {done}/{cfg.steps}  D {m['d_loss']:.3f}  G {m['g_loss']:.3f}  "
                          f"D(x) {m['d_real']:.2f}  D(G(z)) {m['d_fake']:.2f}")
        if done % cfg.sample_every == 0 and self.rank == 0:
            self._samples(done, real)
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            self.step = done
            self.checkpoint()

    def _samples(self, step: int, real: torch.Tensor) -> None:
        G = self.served()
        fake = G.generate(range(64))  # the same seeds as `gan-serve generate --seed 0 --n 64`
        samples = self.run_dir / "samples"
        samples.mkdir(exist_ok=True)
        from gan_serve import images as gimg

        (samples / f"step_{step:07d}.png").write_bytes(gimg.encode_image(gimg.make_grid(fake)))
        real_u8 = gimg.to_uint8(real[:64].detach().float().cpu().numpy())
        for event in self.monitor.check_samples(step, fake, real_u8):
            self._fire(event)

    # -- failures -----------------------------------------------------------------------
    def _fire(self, event: Event) -> None:
        if event.kind in self.monitor.fired and not event.fatal and event.kind != "nan":
            return  # said once per checkpoint interval
        self.monitor.fired.add(event.kind)
        self.events.append(event)
        self.echo(f"[{event.kind}] step {event.step}: {event.message}")
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "events.jsonl", "a") as fh:
                fh.write(json.dumps(event.to_dict()) + "\n")
        mode = self.cfg.on_failure
        if event.fatal or mode == "stop":
            self._report()
            raise TrainingFailure(event)
        if mode == "warn" and event.kind != "nan":
            return
        if self.world > 1 and event.kind != "nan":
            return  # sample statistics differ per process; only identical weights roll back
        self._rollback(event)

    def _rollback(self, event: Event) -> None:
        folder = ck.latest(self.run_dir, healthy_only=True)
        if folder is None or self.rollbacks >= self.cfg.max_rollbacks:
            why = "no healthy checkpoint yet" if folder is None else f"{self.rollbacks} rollbacks already"
            stop = Event(event.step, event.kind, f"{event.message}. Stopping: {why}", fatal=True)
            self._report()
            raise TrainingFailure(stop)
        seen, count, scale = self.events, self.rollbacks, self.lr_scale
        self.restore(folder)
        # what happened stays in the log, and repeated rollbacks keep counting and halving
        self.events, self.rollbacks, self.lr_scale = seen, count + 1, scale * 0.5
        for opt, lr in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * self.lr_scale
        self.echo(f"rolled back to step {self.step} ({folder.name}); learning rates x{self.lr_scale:g}")
        raise _Rollback

    # -- checkpoints --------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else {},
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "best": self.best,
                "monitor": self.monitor.state(), "history": json.dumps(self.history),
                "events": json.dumps([e.to_dict() for e in self.events]),
                "healthy": not self.monitor.fired, "config": json.dumps(self.cfg.to_dict())}

    def checkpoint(self) -> Path | None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        folder = None
        if self.rank == 0:
            served = self.served()
            folder = ck.save(self.run_dir, self.step, served.module, served.spec, self.state(), self.cfg.keep)
            healthy = not self.monitor.fired
            score = self._score(served) if healthy else -1.0
            if healthy and score >= self.best:
                self.best = score
                ck.promote_best(self.run_dir, folder)
            self._report()
        self.monitor.fired.clear()
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return folder

    def _score(self, G: Generator) -> float:
        if self.cfg.data == "builtin:avatars" and (self.cfg.resolution, self.cfg.channels) == (64, 3):
            from .avatars import evaluate_generator

            return evaluate_generator(G, n=480).coverage
        from gan_serve.health import health_check

        return health_check(G.generate(range(64))).mean_pairwise_distance

    def restore(self, folder: Path) -> None:
        s = ck.load_state(folder)
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        if self.G_ema is not None and s["G_ema"]:
            self.G_ema.load_state_dict(s["G_ema"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.step, self.lr_scale, self.rollbacks = s["step"], s["lr_scale"], s["rollbacks"]
        self.best = s.get("best", -1.0)
        self.monitor = Monitor(self.cfg.window, self.cfg.warmup)
        self.monitor.load(s["monitor"])
        self.history = json.loads(s["history"])
        self.events = [Event(**e) for e in json.loads(s["events"])]
        self._first_g_step = False

    def _report(self) -> None:
        if self.rank != 0:
            return
        from .report import write_report

        write_report(self)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    lat.check_seed(seed % 2**32)
