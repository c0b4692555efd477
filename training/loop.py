"""The run around the training step (`Trainer._step`, top to bottom; its maths: steps.py): data,
sample checks, the health monitor, checkpoints, best.safetensors, acting on what a failure
decides (decision.py: go on, roll back, stop), and the run's files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from gan_serve import images as gimg
from gan_serve.backends.torch_backend import slow_bf16_note
from gan_serve.errors import InputError
from gan_serve.fsutil import write_bytes_atomic
from gan_serve.generator import Generator
from gan_serve.health import health_check
from gan_serve.spec import LoadedModel, ModelSpec

from . import checkpoints as ck
from .augment import parse_policy
from .config import TrainConfig, fade, resume_config, schedule_note
from .data import StepBatches, describe, load_dataset, probe
from .decision import GO_ON, Action, Decision, decide
from .distributed import World
from .evaluate import score
from .losses import d_loss_floor
from .models import choose_precision, generator_config, served_copy
from .monitor import Event, Monitor, TrainingFailure, check_data_range, check_finite
from .quality import feature_stats
from .report import RunSummary, write_report
from .runlog import RunLog
from .steps import Nets, StepSetup, judge, set_lr, train_step

Hook = Callable[["Trainer", int], None]  # called after every step's updates (tests provoke failures)
GRID_SEEDS = range(64)  # preview grids: `gan-serve generate --seed 0 --n 64` on the checkpoint


class Trainer:
    """One GAN run: `Trainer(cfg).train()`, or `Trainer(cfg, resume=True).train()` to continue
    the run in cfg.out bit for bit. Raises TrainingFailure when a failure stops it. `given`:
    the fields set on the command line, which cfg.recipe leaves alone (see with_recipe)."""

    def __init__(self, cfg: TrainConfig, dataset: Dataset | None = None, resume: bool = False,
                 echo: Callable[[str], None] = print, hooks: tuple[Hook, ...] = (),
                 given: Collection[str] | None = None) -> None:
        self.world, self.hooks, self.run_dir = World(), hooks, Path(cfg.out)
        self.echo = echo if self.world.main else (lambda message: None)
        self._resume = ck.intact_state(self.run_dir, self.echo) if resume else None  # (folder, state)
        cfg = cfg.with_recipe(given)  # before resume: a resumed run's saved fields are resolved
        if self._resume is not None:  # the run's own config: the maths must not change
            saved = json.loads(self._resume[1]["config"])
            cfg = resume_config(saved, cfg, int(self._resume[1]["step"]))
            if (note := schedule_note(saved, cfg)) is not None:
                self.echo(note)
        self.cfg = cfg = cfg.validate()
        device = self.world.device(cfg.device)
        self.dataset = dataset if dataset is not None else load_dataset(
            cfg.data, cfg.resolution, cfg.channels, cfg.dataset_size, cfg.max_image_pixels)
        self.data_label = cfg.data if dataset is None else f"{type(dataset).__name__} (Python)"
        precision, channels_last, self.precision_why = choose_precision(
            cfg.precision, cfg.channels_last, device.type)
        self.setup = StepSetup(cfg, device, self.world.rank, precision, channels_last,
                               tuple(parse_policy(cfg.augment)))
        self.monitor = Monitor(cfg.window, cfg.warmup, d_loss_floor(cfg.loss, cfg.label_smoothing))
        self.step, self.lr_scale, self.rollbacks = 0, 1.0, 0
        self.failed = False  # a failure since the last checkpoint
        self.best: dict | None = None  # {"step", "score", ...} of best.safetensors
        self.history: list[dict] = []  # one row per log_every steps (the curves)
        self.evals: list[dict] = []  # sample health per sample_every, coverage per checkpoint
        self.events: list[Event] = []  # failures, and sightings that did not count (Event.note)
        self._real: tuple | None = None  # feature statistics of real images (quality.py), when needed
        self.world.start(device)
        self.nets = Nets.build(self.setup, self.world)  # G, D, EMA, optimizers, scalers, DDP wrappers
        self._check_gradient = True  # the first G step of every process checks G's gradient

    # -- the parts hooks and tests reach for by name ------------------------------------------
    @property
    def G(self) -> torch.nn.Module:
        return self.nets.G

    @property
    def D(self) -> torch.nn.Module:
        return self.nets.D

    @property
    def G_ema(self) -> torch.nn.Module | None:
        return self.nets.G_ema

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.nets.opt_g

    @property
    def opt_d(self) -> torch.optim.Optimizer:
        return self.nets.opt_d

    @property
    def precision(self) -> str:
        return self.setup.precision

    @property
    def channels_last(self) -> bool:
        return self.setup.channels_last

    def judge(self, D: torch.nn.Module, images: torch.Tensor, slot: int) -> torch.Tensor:
        """D's logits for `images` at the current step (steps.judge: noise, augmentation, packs)."""
        return judge(self.setup, D, images, self.step, slot)

    def lr_factor(self, step: int) -> float:
        """The learning rates at `step` over the configured ones: rollbacks halve them, and from
        --lr-decay-from they fall linearly to 0 at the last step. A function of the step and the
        saved rollbacks, so a resumed run has the same rates."""
        cfg = self.cfg
        return self.lr_scale * (fade(step, cfg.lr_decay_from, cfg.steps) if cfg.lr_decay_from else 1.0)

    # -- what gets served -------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        gcfg, cfg = generator_config(self.cfg), self.cfg
        seen = self.step * cfg.n_d * cfg.batch_size * self.world.size  # real images read
        return ModelSpec(arch="dcgan", config=gcfg.to_dict(), z_dim=gcfg.z_dim,
                         img_resolution=gcfg.img_resolution, channels=gcfg.channels,
                         training={"trainer": "gan-train", "step": self.step,
                                   "epoch": seen // len(self.dataset), "images_seen": seen,
                                   "data": describe(self.dataset, self.data_label),
                                   "ema": self.nets.G_ema is not None, "healthy": self.healthy(),
                                   "events": [e.kind for e in self.events if e.counted],
                                   "config": cfg.to_dict()})

    def served(self, raw: bool = False, module: torch.nn.Module | None = None) -> Generator:
        """The generator exactly as gan-serve will load it: EMA weights (the raw G's with
        raw=True) in a fresh float32 DCGANGenerator, BN statistics re-estimated for them on fixed
        latents (the same weights always give the same file), eval mode, recipe-v1 seeds."""
        if module is None:
            nets = self.nets
            module = served_copy(nets.G_ema if nets.G_ema is not None and not raw else nets.G, self.cfg)
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
            **self.nets.state_dict(),
            "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "healthy": self.healthy(),
            "best": json.dumps(self.best), "monitor": json.dumps(self.monitor.state()),
            "history": json.dumps(self.history), "evals": json.dumps(self.evals),
            "events": json.dumps([e.to_dict() for e in self.events]),
        }

    def load_state_dict(self, s: dict) -> None:
        """Put the run back into the state `state_dict` gave."""
        self.nets.load_state_dict(s)
        self.step, self.lr_scale, self.rollbacks = int(s["step"]), float(s["lr_scale"]), int(s["rollbacks"])
        self.failed, self.best = False, ck.unscored_if_step_count(json.loads(s["best"]))
        self.monitor.load(json.loads(s["monitor"]))
        self.history, self.evals = json.loads(s["history"]), json.loads(s["evals"])
        self.events = [Event(**e) for e in json.loads(s["events"])]

    def healthy(self) -> bool:
        """A checkpoint written now is healthy: no failure since the last one, and no sighting
        past the warm-up still open. Judged per checkpoint: one early alarm taints only its own."""
        return not self.failed and not self.monitor.suspect(self.step)

    # -- the run ----------------------------------------------------------------------------
    def train(self) -> Path:
        """Train to cfg.steps and return the run folder; raises TrainingFailure to stop."""
        self._open_run()
        try:
            self.act(self._check_data())
            while self.step < self.cfg.steps:
                self.act(self._segment())  # to the last step, or to a rollback or a stop
        finally:
            self._report()
            self.log.close()
        return self.run_dir

    def act(self, decision: Decision) -> None:
        """Do what a decision says. Go on: nothing. Roll back: the state of its healthy checkpoint,
        with what happened kept (the events, best.safetensors, the rollback count) and the learning
        rates halved. Stop: raise TrainingFailure with its event."""
        if decision.action is Action.STOP:
            raise TrainingFailure(decision.event)
        if decision.action is not Action.ROLL_BACK:
            return
        seen, best, count, scale = self.events, self.best, self.rollbacks + 1, self.lr_scale * 0.5
        self.load_state_dict(ck.load_state(decision.folder))
        self.events, self.best, self.rollbacks, self.lr_scale = seen, best, count, scale
        self.monitor.fired.clear()
        self.monitor.load({})  # judge the lowered lr on its own steps, not the window that just fired
        self.log.rewrite(self.history)
        self.echo(f"rolled back to step {self.step} ({decision.folder.name}); learning rates x{scale:g}")

    def _open_run(self) -> None:
        if self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ck.clean_stale(self.run_dir)
        self.world.barrier()
        if self._resume is not None:
            (folder, state), self._resume = self._resume, None  # no second copy held for the run
            self.load_state_dict(state)
            ck.repair_best(self.run_dir, self.best)
            self.echo(f"resumed {self.run_dir} at step {self.step} ({folder.name})")
        elif (found := ck.latest(self.run_dir)) is not None:
            raise InputError(f"{str(self.run_dir)!r} already holds a run (checkpoint {found.name}); "
                             "pass --resume to continue it, or choose another --out")
        elif self.cfg.init_from:
            weights, what = ck.init_weights(self.cfg, Path(self.cfg.init_from))
            self.nets.load_weights(weights)
            self.echo(f"starting from {what} (step 0, fresh optimizers)")
        self.log = RunLog(self.run_dir, self.world.main, self.cfg.tensorboard, self.echo)
        self.log.rewrite(self.history)
        self.echo(f"data {describe(self.dataset, self.data_label)}; G {generator_config(self.cfg).describe()}"
                  f"; training to step {self.cfg.steps} on {self.setup.device} ({self.world.size} "
                  f"process(es)); {self.precision_why}")
        if (note := slow_bf16_note(self.setup.device.type, self.precision)) is not None:
            self.echo(note)

    def _check_data(self) -> Decision:
        """Before the first step: the data range, and the real diversity collapse is judged by."""
        sample = probe(self.dataset, self.cfg.seed)
        decision = self._fire_all([check_data_range(sample)])
        if decision.action is Action.GO_ON:  # (a wrong range stops the run: no reference taken)
            self.monitor.set_reference(gimg.to_uint8(sample[:64].float().numpy()))
        return decision

    def _segment(self) -> Decision:
        """Steps from self.step: to the last one (GO_ON), or to one that decides otherwise."""
        cfg = self.cfg
        sampler = StepBatches(len(self.dataset), cfg.batch_size, cfg.seed, self.step, cfg.steps, cfg.n_d,
                              self.world.rank, self.world.size)
        batches = iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.workers,
                                  pin_memory=self.setup.device.type == "cuda"))
        self._clock = (self.step, time.perf_counter())
        self.log.start(self.step)
        with tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True,
                  disable=not self.world.main or None) as bar:
            for step in range(self.step, cfg.steps):
                self.step = step
                if (decision := self._step(step, batches, bar)).action is not Action.GO_ON:
                    return decision
            self.step = cfg.steps
        return GO_ON

    def _step(self, step: int, batches: Iterator[torch.Tensor], bar: tqdm) -> Decision:
        """One step, top to bottom: lrs, D's and G's updates (steps.train_step), hooks, the numbers
        and their checks, log, samples, checkpoint. A failure deciding to roll back or stop ends it."""
        cfg, done = self.cfg, step + 1
        set_lr(self.nets, cfg, self.lr_factor(step))
        check, self._check_gradient = self._check_gradient, False  # a process's first G step only
        m, no_gradient = train_step(self.nets, self.setup, step, batches, check)
        if no_gradient is not None:  # a configuration bug: fatal, the step stops here
            return self._fire(no_gradient)
        for hook in self.hooks:
            hook(self, step)
        m = dict(zip(m, self.world.mean(list(m.values())), strict=True))  # same numbers everywhere
        bar.update(1)
        bar.set_postfix_str(f"D {m['d_loss']:.3f}  G {m['g_loss']:.3f}  D(x) {m['d_real']:.2f}  "
                            f"D(G(z)) {m['d_fake']:.2f}", refresh=False)
        self.monitor.record(m["d_loss"], m["g_loss"], m["d_fake"])
        # the first checkpoint comes with the first sample check: a rollback target exists early
        ckpt = done % cfg.ckpt_every == 0 or done == cfg.steps or done == min(cfg.sample_every, cfg.steps)
        sample = done % cfg.sample_every == 0 or done == cfg.steps
        weights = (self.nets.G, self.nets.D) if ckpt or done % cfg.log_every == 0 else ()
        losses = {"D loss": m["d_loss"], "G loss": m["g_loss"]}
        checks = (check_finite(step, losses, *weights), self.monitor.check_domination(step),
                  self.monitor.check_d_constant(step, m["d_std"], m["d_mean"]))
        if (decision := self._fire_all(checks)).action is not Action.GO_ON:
            return decision
        if done % cfg.log_every == 0 or done == cfg.steps:
            self._log(done, m)
        self.step = done
        module = self.served().module if self.world.main and (sample or ckpt) else None
        if sample and (decision := self._samples(done, module)).action is not Action.GO_ON:
            return decision
        return self._checkpoint(module) if ckpt else GO_ON

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

    def _samples(self, done: int, module: torch.nn.Module | None) -> Decision:
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
            if sighted and self.nets.G_ema is not None:  # the raw G must show it as well
                raw = {e.kind for e in self.monitor.check_samples(
                    done, health_check(self.served(raw=True).generate(GRID_SEEDS)))}
                sighted = [e for e in sighted if e.kind in raw]
            events = [e.to_dict() for e in self.monitor.confirm(done, "samples", sighted)]
        return self._fire_all(Event(**e) for e in self.world.share(events))

    # -- checkpoints, best, failures ---------------------------------------------------------
    def _checkpoint(self, module: torch.nn.Module | None = None) -> Decision:
        """Score; then, unless the score's coverage check decides to roll back or stop, save
        (rank 0) and promote to best.safetensors when healthy and best so far."""
        self.world.check_in_sync(self.nets.G, self.nets.D)
        result = None
        if self.world.main:
            served = self.served(module=module)
            result = score(served, self.cfg, self.data_label, self._real_stats)
        result = self.world.share(result)
        if (decision := self._coverage(result["metrics"])).action is not Action.GO_ON:
            return decision  # before anything is saved
        metrics = {"step": self.step, **result["metrics"], "score": result["score"]}
        if metrics.keys() - {"step", "score"}:
            self.evals.append(metrics)
        old = (self.best or {}).get("score")
        if self.healthy() and (old is None or metrics["score"] is None or metrics["score"] >= old):
            self.best = metrics
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
        return GO_ON

    def _real_stats(self) -> tuple:
        """Feature statistics of --eval-samples real images (the quality proxy's reference)."""
        if self._real is None:
            real = probe(self.dataset, self.cfg.seed, self.cfg.eval_samples)
            self._real = feature_stats(gimg.to_uint8(real.float().numpy()))
        return self._real

    def _coverage(self, metrics: dict) -> Decision:
        """builtin:avatars: the mode-coverage detector, with the persistence rule over checkpoints."""
        if "modes_covered" not in metrics:
            return GO_ON
        event = self.monitor.check_coverage(self.step, metrics["modes_covered"], metrics["modes_total"],
                                            metrics["good"])
        return self._fire_all(self.monitor.confirm(self.step, "coverage", [event] if event else []))

    def _fire_all(self, events: Iterable[Event | None]) -> Decision:
        """Fire the events in turn, up to the first that decides to roll back or stop."""
        for event in events:
            if event is not None and (decision := self._fire(event)).action is not Action.GO_ON:
                return decision
        return GO_ON

    def _fire(self, event: Event) -> Decision:
        """Record the event (each kind once per checkpoint interval), say it, and decide what the
        run does about it (decision.decide: --on-failure)."""
        key = event.kind if event.counted else f"{event.kind} ({event.note})"
        if not event.fatal and key in self.monitor.fired:
            return GO_ON  # each kind is said once per checkpoint interval
        self.monitor.fired.add(key)
        self.events.append(event)
        self.log.event(event)
        if not event.counted:  # a sighting: in the report, not acted on (nor said inside the warm-up)
            if event.step >= self.cfg.warmup:
                self.echo(f"note: step {event.step}: {event.kind.replace('_', ' ')} seen, {event.note}")
            return GO_ON
        self.echo(f"[{event.kind}] step {event.step}: {event.message}")
        self.failed = True  # the checkpoint closing this interval is not healthy
        decision = decide(event, self.cfg, self.rollbacks, lambda: ck.latest(self.run_dir, healthy_only=True))
        if decision.note:
            self.echo(decision.note)
        return decision

    def _report(self) -> None:
        if self.world.main and self.run_dir.is_dir():
            write_report(self.summary())
