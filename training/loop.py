"""The run around the training step (steps.py): data, EMA, fixed-noise sample checks, the health
monitor wired in, checkpoints, best.safetensors, rollback on failure, and the run's files."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Collection
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
from .augment import parse_policy
from .config import TrainConfig, resume_config, schedule_note
from .data import CALIBRATION_STREAM, StepBatches, derived_seed, describe, load_dataset, probe
from .distributed import World
from .evaluate import score
from .losses import d_loss_floor
from .models import build, choose_precision, float32_copy, generator_config
from .monitor import Event, Monitor, TrainingFailure, check_data_range, check_finite
from .quality import feature_stats
from .report import RunSummary, write_report
from .runlog import RunLog
from .steps import Steps

Hook = Callable[["Trainer", int], None]  # called after every step's updates (tests provoke failures)
GRID_SEEDS = range(64)  # preview grids: `gan-serve generate --seed 0 --n 64` on the checkpoint


class _Rollback(Exception):
    """Unwinds the current segment after the state was restored from a healthy checkpoint."""


class Trainer(Steps):
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
        self.precision, self.channels_last, self.precision_why = choose_precision(
            cfg.precision, cfg.channels_last, self.device.type)
        self.G, self.D = (m.to(self.device) for m in build(cfg))
        if self.channels_last:
            self.G, self.D = (m.to(memory_format=torch.channels_last) for m in (self.G, self.D))
        self.G_ema = copy.deepcopy(self.G).eval() if cfg.ema > 0 else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        fp16 = self.precision == "fp16"  # bf16 needs no loss scaling; fp16 gradients underflow without
        self.scaler_g, self.scaler_d = (torch.amp.GradScaler(self.device.type, enabled=fp16) for _ in "gd")
        self.monitor = Monitor(cfg.window, cfg.warmup, d_loss_floor(cfg.loss, cfg.label_smoothing))
        self.step, self.lr_scale, self.rollbacks = 0, 1.0, 0
        self.failed = False  # a failure since the last checkpoint
        self.best: dict | None = None  # {"step", "score", ...} of best.safetensors
        self.history: list[dict] = []  # one row per log_every steps (the curves)
        self.evals: list[dict] = []  # sample health per sample_every, coverage per checkpoint
        self.events: list[Event] = []  # failures, and sightings that did not count (Event.note)
        self._real: tuple | None = None  # feature statistics of real images (quality.py), when needed
        self.world.start(self.device)
        self.G_train, self.D_train = self.world.wrap(self.G, self.D, cfg.sync_bn, self.device)
        self._check_gradient = True  # the first G step of every process checks G's gradient

    # -- what gets served -------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        gcfg, cfg = generator_config(self.cfg), self.cfg
        seen = self.step * cfg.n_d * cfg.batch_size * self.world.size  # real images read
        return ModelSpec(arch="dcgan", config=gcfg.to_dict(), z_dim=gcfg.z_dim,
                         img_resolution=gcfg.img_resolution, channels=gcfg.channels,
                         training={"trainer": "gan-train", "step": self.step,
                                   "epoch": seen // len(self.dataset), "images_seen": seen,
                                   "data": describe(self.dataset, self.data_label),
                                   "ema": self.G_ema is not None, "healthy": self.healthy(),
                                   "events": [e.kind for e in self.events if e.counted],
                                   "config": cfg.to_dict()})

    def served(self, raw: bool = False, module: torch.nn.Module | None = None) -> Generator:
        """The generator exactly as gan-serve will load it: EMA weights (the raw G's with
        raw=True) in a fresh float32 DCGANGenerator, BN statistics re-estimated for them on fixed
        latents (the same weights always give the same file), eval mode, recipe-v1 seeds."""
        if module is None:
            cfg = self.cfg
            source = self.G_ema if self.G_ema is not None and not raw else self.G
            g = torch.Generator().manual_seed(derived_seed(cfg.seed, CALIBRATION_STREAM))
            latents = torch.randn(cfg.bn_calibration * cfg.batch_size, cfg.z_dim, generator=g)
            module = float32_copy(source, DCGANGenerator(generator_config(cfg)), latents, cfg.batch_size)
        return Generator(LoadedModel(module, self.spec(), "gan-train", "0" * 64, "training"))

    def summary(self) -> RunSummary:
        """What the report shows: numbers and lists, no networks."""
        return RunSummary(
            run_dir=self.run_dir, cfg=self.cfg, step=self.step, rollbacks=self.rollbacks,
            lr_scale=self.lr_scale, data=describe(self.dataset, self.data_label), history=self.history,
            evals=self.evals, events=self.events, best=self.best,
            real_diversity=self.monitor.real.mean_pairwise_distance if self.monitor.real else None)

    # -- the state of a run (checkpoints.py writes and reads it) ----------------------------
    def state_dict(self) -> dict:
        """Everything a run is: weights, optimizers, EMA, step and the monitor's memory. No RNG
        state: data order and latents are functions of (seed, step), see data.derived_seed.
        Only tensors, numbers and strings (JSON text for the rest): torch.load(weights_only=True)."""
        return {
            "version": ck.STATE_VERSION, "step": self.step, "config": json.dumps(self.cfg.to_dict()),
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else {},
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "healthy": self.healthy(),
            "best": json.dumps(self.best), "monitor": json.dumps(self.monitor.state()),
            "history": json.dumps(self.history), "evals": json.dumps(self.evals),
            "events": json.dumps([e.to_dict() for e in self.events]),
        }

    def load_state_dict(self, s: dict) -> None:
        """Put the run back into the state `state_dict` gave."""
        self.load_weights(s)
        for name in ("opt_g", "opt_d", "scaler_g", "scaler_d"):
            getattr(self, name).load_state_dict(s[name])
        self.step, self.lr_scale, self.rollbacks = int(s["step"]), float(s["lr_scale"]), int(s["rollbacks"])
        self.failed, self.best = False, unscored_if_step_count(json.loads(s["best"]))
        self.monitor.load(json.loads(s["monitor"]))
        self.history, self.evals = json.loads(s["history"]), json.loads(s["evals"])
        self.events = [Event(**e) for e in json.loads(s["events"])]

    def load_weights(self, s: dict) -> None:
        """G, D (when given) and the EMA (G's weights when the state has none)."""
        self.G.load_state_dict(s["G"])
        if s.get("D"):
            self.D.load_state_dict(s["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(s.get("G_ema") or s["G"])

    def healthy(self) -> bool:
        """A checkpoint written now is healthy: no failure since the last one, and no sighting
        past the warm-up still open. Judged per checkpoint: one early alarm taints only its own."""
        return not self.failed and not self.monitor.suspect(self.step)

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
            self.log.close()
        return self.run_dir

    def _open_run(self) -> None:
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
            weights, what = ck.init_weights(self.cfg, Path(self.cfg.init_from))
            self.load_weights(weights)
            self.echo(f"starting from {what} (step 0, fresh optimizers)")
        self.log = RunLog(self.run_dir, self.world.main, self.cfg.tensorboard, self.echo)
        self.log.rewrite(self.history)
        self.echo(f"data {describe(self.dataset, self.data_label)}; "
                  f"G {generator_config(self.cfg).describe()}; "
                  f"training to step {self.cfg.steps} on {self.device} ({self.world.size} process(es)); "
                  f"{self.precision_why}")
        if (note := slow_bf16_note(self.device.type, self.precision)) is not None:
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
        self.log.start(self.step)
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
        # the first checkpoint comes with the first sample check: a rollback target exists early
        ckpt = done % cfg.ckpt_every == 0 or done == cfg.steps or done == min(cfg.sample_every, cfg.steps)
        sample = done % cfg.sample_every == 0 or done == cfg.steps
        weights = (self.G, self.D) if ckpt or done % cfg.log_every == 0 else ()
        losses = {"D loss": m["d_loss"], "G loss": m["g_loss"]}
        for event in (check_finite(step, losses, *weights), self.monitor.check_domination(step),
                      self.monitor.check_d_constant(step, m["d_std"], m["d_mean"])):
            if event is not None:
                self._fire(event)
        if done % cfg.log_every == 0 or done == cfg.steps:
            self._log(done, m)
        self.step = done
        module = self.served().module if self.world.main and (sample or ckpt) else None
        if sample:
            self._samples(done, module)
        if ckpt:
            self.checkpoint(module)

    def _log(self, done: int, m: dict[str, float]) -> None:
        last_step, last_time = self._clock
        now = time.perf_counter()
        steps_per_s = (done - last_step) / max(now - last_time, 1e-9)
        self._clock = (done, now)
        factor = self.lr_factor(done - 1)
        row = {"step": done, **{k: m[k] for k in ("d_loss", "g_loss", "d_real", "d_fake")},
               "lr_g": self.cfg.lr_g * factor, "lr_d": self.cfg.lr_d * factor, "lr_scale": factor,
               "images_per_s": steps_per_s * self.cfg.batch_size * self.world.size,
               "steps_per_s": steps_per_s}
        self.history.append(row)
        self.log.metrics(row, self.cfg.steps)

    def _samples(self, done: int, module: torch.nn.Module | None) -> None:
        """The fixed-noise grid (rank 0 writes it) and the sample-based health checks: a sighting
        on the EMA G must be seen on the raw G too, and by PERSIST_CHECKS checks in a row."""
        events = None
        if self.world.main:
            fake = self.served(module=module).generate(GRID_SEEDS)
            samples = self.run_dir / "samples"
            samples.mkdir(exist_ok=True)
            write_bytes_atomic(samples / f"step_{done:07d}.png", gimg.encode_image(gimg.make_grid(fake)))
            health = health_check(fake)
            self.evals.append({"step": done, "diversity": health.mean_pairwise_distance,
                               "duplicates": health.duplicate_share, "black": health.black_share,
                               "saturated": health.saturated_share, "flat": health.constant_share})
            sighted = self.monitor.check_samples(done, health)
            if sighted and self.G_ema is not None:  # the raw G must show it as well
                raw = {e.kind for e in self.monitor.check_samples(
                    done, health_check(self.served(raw=True).generate(GRID_SEEDS)))}
                sighted = [e for e in sighted if e.kind in raw]
            events = [e.to_dict() for e in self.monitor.confirm(done, "samples", sighted)]
        for e in self.world.share(events):
            self._fire(Event(**e))

    # -- checkpoints, best, failures ---------------------------------------------------------
    def checkpoint(self, module: torch.nn.Module | None = None) -> Path | None:
        """Score, save (rank 0) and promote to best.safetensors when healthy and best so far."""
        self.world.check_in_sync(self.G, self.D)
        result = None
        if self.world.main:
            served = self.served(module=module)
            result = score(served, self.cfg, self.data_label, self._real_stats)
        result = self.world.share(result)
        self._coverage(result["metrics"])
        metrics = {"step": self.step, **result["metrics"], "score": result["score"]}
        if metrics.keys() - {"step", "score"}:
            self.evals.append(metrics)
        old = (self.best or {}).get("score")
        if self.healthy() and (old is None or metrics["score"] is None or metrics["score"] >= old):
            self.best = metrics
        folder = None
        if self.world.main:
            served = self.served(module=served.module)  # the spec as of now: healthy or not
            folder = ck.save(self.run_dir, self.step, served.module, served.spec, self.state_dict(),
                             self.cfg.keep)
            if self.best is metrics:
                ck.promote_best(self.run_dir, folder, self.best)
            self._report()
        self.world.barrier()
        self.monitor.fired.clear()
        self.failed = False  # the next checkpoint is judged on its own interval
        return folder

    def _real_stats(self) -> tuple:
        """Feature statistics of --eval-samples real images (the quality proxy's reference)."""
        if self._real is None:
            real = probe(self.dataset, self.cfg.seed, self.cfg.eval_samples)
            self._real = feature_stats(gimg.to_uint8(real.float().numpy()))
        return self._real

    def _coverage(self, metrics: dict) -> None:
        """builtin:avatars: the mode-coverage detector, with the persistence rule over checkpoints."""
        if "modes_covered" not in metrics:
            return
        event = self.monitor.check_coverage(self.step, metrics["modes_covered"], metrics["modes_total"],
                                            metrics["good"])
        for e in self.monitor.confirm(self.step, "coverage", [event] if event else []):
            self._fire(e)  # a rollback here unwinds before anything is saved

    def _fire(self, event: Event) -> None:
        key = event.kind if event.counted else f"{event.kind} ({event.note})"
        if not event.fatal and key in self.monitor.fired:
            return  # each kind is said once per checkpoint interval
        self.monitor.fired.add(key)
        self.events.append(event)
        self.log.event(event)
        if not event.counted:  # a sighting: in the report, not acted on (nor said inside the warm-up)
            if event.step >= self.cfg.warmup:
                self.echo(f"note: step {event.step}: {event.kind.replace('_', ' ')} seen, {event.note}")
            return
        self.echo(f"[{event.kind}] step {event.step}: {event.message}")
        if event.fatal or self.cfg.on_failure == "stop":
            raise TrainingFailure(event)
        self.failed = True  # the checkpoint closing this interval is not healthy
        if self.cfg.on_failure == "rollback" or event.kind == "nan":  # NaN cannot be trained through
            self._rollback(event)

    def _rollback(self, event: Event) -> None:
        folder = ck.latest(self.run_dir, healthy_only=True)
        if folder is None and event.kind != "nan":  # nothing to go back to: go on, and say so
            self.echo(f"no healthy checkpoint to roll back to yet: going on from step {event.step}")
            return
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
        self.log.rewrite(self.history)
        self.echo(f"rolled back to step {self.step} ({folder.name}); learning rates x{scale:g}")
        raise _Rollback

    def restore(self, folder: Path) -> None:
        self.load_state_dict(ck.load_state(folder))

    def _report(self) -> None:
        if self.world.main and self.run_dir.is_dir():
            write_report(self.summary())


def unscored_if_step_count(best: dict | None) -> dict | None:
    """A best.json from before checkpoints had a quality score held the step count as its score:
    a resumed run treats that checkpoint as unscored, so the next real score replaces it."""
    if best and best.keys() <= {"step", "score"} and best.get("score") == best.get("step"):
        return {**best, "score": None}
    return best
