"""TrainConfig: every knob of gan-train, each with its help text; saved inside every checkpoint.

The CLI builds one flag per field (`lr_g` -> `--lr-g`) whose help is the field's
`metadata["help"]` (`flag(default, help)` below), so the help lives with the field.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from gan_serve.errors import InputError
from gan_serve.spec import MAX_WIDTH, MAX_Z_DIM

LOSSES = ("ns", "hinge", "lsgan")
ON_FAILURE = ("warn", "rollback", "stop")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# fields a resumed run may change: they decide how long and how visibly it runs, not its maths
RUN_FIELDS = ("out", "steps", "device", "workers", "ckpt_every", "keep", "sample_every", "log_every",
              "eval_samples", "bn_calibration", "on_failure", "max_rollbacks", "window", "warmup",
              "tensorboard")


def flag(default: Any, help: str) -> Any:  # the name typer and argparse use
    """A TrainConfig field with its --flag's help text in the field's metadata."""
    return field(default=default, metadata={"help": help})


# --recipe dcgan: the DCGAN paper's training (Radford et al. 2015), as pytorch/examples' dcgan runs it
DCGAN_RECIPE = {"loss": "ns", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_d": 1,
                "label_smoothing": 0.0, "r1_gamma": 0.0, "r1_every": 1, "top_k": 1.0, "d_batch_norm": True,
                "spectral_norm": False, "augment": "", "instance_noise": 0.0, "pack": 1, "ema": 0.0,
                "d_bias": False}
RECIPES = {"default": {}, "dcgan": DCGAN_RECIPE}
# Upper limits (a saved run's config is read from a file: every size it declares is checked
# against these before anything is allocated; G and D take gan_serve's generator limits)
MAX_STEPS = 10**9
MAX_BATCH = 4096  # images per step and process
MAX_CALIBRATION = 65_536  # images of the BN calibration pass: --bn-calibration x --batch-size
MAX_DATASET_SIZE = 10_000_000  # items: an epoch's permutation is 8 bytes per item
MAX_EVAL_SAMPLES = 10_000  # real and generated images held at once to score a checkpoint
MAX_WORKERS = 256
MAX_IMAGE_PIXELS = 2**27  # per data image, ~11585x11585: under PIL's own bomb error (2 x 89.5 M)
# what a config saved before these fields existed meant (their defaults now differ): resume and
# --init-from of an older run keep its maths
BEFORE_FIELDS = {"spectral_norm": False, "d_bias": False}


@dataclass
class TrainConfig:
    recipe: str = flag("default",
        "default (measured on real data: TRAINING.md), or dcgan (the paper's settings)")
    data: str = flag("builtin:avatars",
        "image folder, ImageFolder-style tree, .zip of images, or builtin:avatars")
    out: str = flag("runs/gan", "run folder: checkpoints, samples, events.jsonl, report.html")
    resolution: int = flag(64, "image size: 32, 64 or 128 (resize + center-crop)")
    channels: int = flag(3, "3 for RGB, 1 for greyscale")
    z_dim: int = flag(100, "latent size")
    g_width: int = flag(64, "ngf: width of G's last hidden layer (doubling towards z)")
    d_width: int = flag(64, "ndf: width of D's first layer (doubling towards the score)")
    batch_size: int = flag(64, "images per step (per process under torchrun)")
    steps: int = flag(5000, "generator steps to train for")
    lr_g: float = flag(8e-4, "Adam learning rate of G (4x the DCGAN paper's 2e-4: avatars reach 20% high "
                       "quality in 4,000 steps instead of 7,000, TRAINING.md; --recipe dcgan: 2e-4)")
    lr_d: float = flag(8e-4, "Adam learning rate of D")
    lr_decay_from: int = flag(0,
        "step from which both lrs fall linearly to 0 at the last step (0: constant lr); with --resume, "
        "a step >= the run's own anneals a run that has levelled off")
    beta1: float = flag(0.5, "Adam beta1 (DCGAN paper; the default 0.9 makes GANs oscillate)")
    beta2: float = flag(0.999, "Adam beta2")
    loss: str = flag("hinge", "hinge, ns (non-saturating BCE: --recipe dcgan), or lsgan (least squares)")
    label_smoothing: float = flag(0.0, "one-sided: real targets become 1 - s (0.1 is typical)")
    n_d: int = flag(1, "D steps per G step")
    r1_gamma: float = flag(0.0, "weight of the R1 gradient penalty on real images (0: off)")
    r1_every: int = flag(1, "lazy R1: the penalty (x this) every this many D steps only (1: every step)")
    top_k: float = flag(1.0,
        "Top-k training: G's loss uses only this share of fakes, those D rates best (1: all)")
    d_batch_norm: bool = flag(False, "BatchNorm in D's hidden layers (DCGAN paper, --recipe dcgan)")
    d_bias: bool = flag(True,
        "biases in D's convolutions (without them and without BatchNorm, D(a x) = a D(x): a flat "
        "grey image scores 0 whatever D learned, and G can settle there)")
    spectral_norm: bool = flag(True, "spectral normalisation of D's convolutions (Miyato et al. 2018)")
    augment: str = flag("",
        "DiffAugment of all D sees: comma-separated color, translation, cutout (\"\": off)")
    instance_noise: float = flag(0.0, "std of Gaussian noise on every image D sees, fading linearly to 0")
    instance_noise_steps: int = flag(0, "step by which the instance noise has faded to 0 (0: the last step)")
    pack: int = flag(2, "PacGAN: D judges packs of this many images stacked on channels (1: one image)")
    ema: float = flag(0.999, "EMA decay of G's weights and BN statistics (0: off); EMA G is what is "
                      "served. Step t uses min(this, (1+t)/(10+t)) (--init-from: this from the start): "
                      "0.999 holds from step ~9,000, 0.9999 from ~90,000")
    bn_calibration: int = flag(8,
        "batches of fixed latents that re-estimate the served G's BN statistics (0: off)")
    precision: str = flag("auto", "auto (bf16 on GPUs and AMX/AVX512-BF16 CPUs, else fp32), fp32, bf16, fp16")
    channels_last: bool = flag(False,
        "channels-last memory format (faster with bf16; auto turns it on with bf16)")
    sync_bn: bool = flag(False, "SyncBatchNorm across processes under torchrun (CUDA only)")
    init_from: str = flag("", "new run from a gan-train run, its ckpt/step_N, or a generator file (D fresh)")
    seed: int = flag(0, "decides init, data order and every z: same seed, same run")
    ckpt_every: int = flag(500, "steps between checkpoints")
    keep: int = flag(3, "checkpoints kept besides best.safetensors")
    sample_every: int = flag(250, "steps between fixed-noise sample grids and sample health checks")
    log_every: int = flag(50, "steps between history points (curves), log lines and weight checks")
    eval_samples: int = flag(1000,
        "samples scored per checkpoint to pick best.safetensors (0: latest healthy)")
    window: int = flag(200, "steps the domination detector averages over")
    warmup: int = flag(500, "steps before domination, collapse and black/flat output count as failures")
    on_failure: str = flag("rollback", "warn, rollback (last healthy checkpoint, lr x0.5), or stop")
    max_rollbacks: int = flag(3, "rollbacks before the run gives up")
    workers: int = flag(0, "DataLoader worker processes")
    dataset_size: int = flag(50_000, "items of builtin:avatars")
    max_image_pixels: int = flag(4096 * 4096,
        f"data images with more pixels are skipped unread (bombs); at most {MAX_IMAGE_PIXELS:,}")
    device: str = flag("auto", "auto, cpu or cuda")
    tensorboard: bool = flag(False, "also log scalars to TensorBoard (needs `pip install tensorboard`)")
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A saved config; fields it predates take the value that was in force before them."""
        kinds = {f.name: type(f.default) for f in fields(cls) if f.default is not MISSING}
        kept = {k: v for k, v in {**BEFORE_FIELDS, **d}.items() if k in kinds}
        for k, v in kept.items():  # a file's values: each of its field's type (a float takes an int)
            want = (int, float) if kinds[k] is float else kinds[k]
            if isinstance(v, bool) is not (kinds[k] is bool) or not isinstance(v, want):
                raise InputError(f"{k} must be {kinds[k].__name__}, got {v!r:.40}")
        return cls(**kept)

    def with_recipe(self, given: Collection[str] | None = None) -> TrainConfig:
        """--recipe's settings, except for the fields in `given` (the flags on the command line;
        None: every field that differs from its default): a flag you give wins."""
        if self.recipe not in RECIPES:
            raise InputError(f"--recipe must be one of {', '.join(RECIPES)}")
        default = TrainConfig()
        keep = given if given is not None else {k for k in RECIPES[self.recipe]
                                                if getattr(self, k) != getattr(default, k)}
        return replace(self, **{k: v for k, v in RECIPES[self.recipe].items() if k not in keep})

    def validate(self) -> TrainConfig:
        """Raise InputError naming the flag and what is allowed; return self."""
        from .augment import POLICIES  # imports torch: not at module level (gan-train --help)

        checks = [
            (self.resolution in (32, 64, 128), "--resolution must be 32, 64 or 128"),
            (self.channels in (1, 3), "--channels must be 1 (greyscale) or 3 (RGB)"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}"),
            (self.on_failure in ON_FAILURE, f"--on-failure must be one of {', '.join(ON_FAILURE)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda"),
            (min(self.steps, self.batch_size, self.n_d) >= 1, "--steps, --batch-size and --n-d must be >= 1"),
            (self.steps <= MAX_STEPS, f"--steps must be <= {MAX_STEPS:,}"),
            (2 <= self.batch_size <= MAX_BATCH,
             f"--batch-size must be >= 2 (BatchNorm needs two images) and <= {MAX_BATCH}"),
            (1 <= self.z_dim <= MAX_Z_DIM, f"--z-dim must be from 1 to {MAX_Z_DIM}"),
            (min(self.g_width, self.d_width) >= 1, "--g-width and --d-width must be >= 1"),
            (max(self.g_width, self.d_width) * self.resolution // 8 <= MAX_WIDTH,
             f"--g-width and --d-width double towards the 4x4 layer, which may be at most {MAX_WIDTH:,} "
             f"channels wide: at --resolution {self.resolution} they must be <= "
             f"{MAX_WIDTH * 8 // max(self.resolution, 1)}"),
            (all(math.isfinite(getattr(self, f.name)) for f in fields(self) if type(f.default) is float),
             "learning rates, betas, --r1-gamma, --instance-noise and every other number must be finite"),
            (min(self.lr_g, self.lr_d) >= 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
             "learning rates must be >= 0 and Adam betas in [0, 1)"),
            (0.0 <= self.label_smoothing < 0.5, "--label-smoothing must be in [0, 0.5)"),
            (self.r1_gamma >= 0 and self.r1_every >= 1, "--r1-gamma must be >= 0 and --r1-every >= 1"),
            (_policy_ok(self.augment), f"--augment must be a comma-separated list of {', '.join(POLICIES)}"),
            (0.0 < self.top_k <= 1.0, "--top-k must be in (0, 1] (a share of the batch; 1 keeps every fake)"),
            (self.instance_noise >= 0 and self.instance_noise_steps >= 0,
             "--instance-noise and --instance-noise-steps must be >= 0"),
            (self.pack >= 1 and self.batch_size % self.pack == 0,
             "--pack must be >= 1 and divide --batch-size"),
            (0.0 <= self.ema < 1.0, "--ema must be in [0, 1)"),
            (self.lr_decay_from == 0 or 0 < self.lr_decay_from < self.steps,
             "--lr-decay-from must be >= 0 and below --steps"),
            (min(self.ckpt_every, self.sample_every, self.log_every, self.window, self.keep) >= 1,
             "--ckpt-every, --sample-every, --log-every, --window and --keep must be >= 1"),
            (min(self.warmup, self.max_rollbacks, self.workers, self.eval_samples, self.bn_calibration) >= 0,
             "--warmup, --max-rollbacks, --workers, --eval-samples and --bn-calibration must be >= 0"),
            (self.bn_calibration * self.batch_size <= MAX_CALIBRATION,
             f"--bn-calibration x --batch-size must be <= {MAX_CALIBRATION:,} (images)"),
            (self.eval_samples <= MAX_EVAL_SAMPLES, f"--eval-samples must be <= {MAX_EVAL_SAMPLES:,}"),
            (self.workers <= MAX_WORKERS, f"--workers must be <= {MAX_WORKERS}"),
            (1 <= self.dataset_size <= MAX_DATASET_SIZE,
             f"--dataset-size must be from 1 to {MAX_DATASET_SIZE:,}"),
            (1 <= self.max_image_pixels <= MAX_IMAGE_PIXELS,
             f"--max-image-pixels must be from 1 to {MAX_IMAGE_PIXELS:,}"),
            (0 <= self.seed < 2**63, "--seed must be in [0, 2**63)"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return self


def _policy_ok(policy: str) -> bool:
    from .augment import parse_policy

    try:
        parse_policy(policy)
    except ValueError:
        return False
    return True


def resume_config(saved: dict, given: TrainConfig, step: int = 0) -> TrainConfig:
    """The config a resumed run continues with: the saved one, plus the run fields the user set.

    Anything else the user set to a non-default value that differs from the saved run is an
    error: a resumed run is the same run (start a new --out to change its maths). One exception:
    --lr-decay-from at or after the resumed `step` (annealing a run that has levelled off), since
    it leaves every step already taken as it was.
    """
    old, default = TrainConfig.from_dict(saved), TrainConfig()
    changes = {}
    for f in fields(TrainConfig):
        new = getattr(given, f.name)
        if new == getattr(default, f.name) or new == getattr(old, f.name):
            continue
        if f.name == "lr_decay_from":
            if new < step:
                raise InputError(f"--lr-decay-from {new} is before the resumed run's step {step}: the "
                                 f"steps taken keep their rates; pass a step >= {step} to anneal from here")
        elif f.name not in RUN_FIELDS:
            flag = "--" + f.name.replace("_", "-")
            raise InputError(f"{flag} {new} differs from the resumed run's {getattr(old, f.name)}; a "
                             f"resumed run keeps its configuration (only {', '.join(RUN_FIELDS)} may "
                             f"change, and --lr-decay-from from step {step} on); train into a new --out "
                             "to change it")
        changes[f.name] = new
    changes["out"] = given.out
    return replace(old, **changes).validate()


def fade(step: int, start: int, end: int) -> float:
    """1 until `start`, falling linearly to 0 at `end` (the instance noise, the lr decay)."""
    return min(1.0, max(0.0, 1.0 - (step - start) / (end - start)))


def schedule_note(saved: dict, cfg: TrainConfig) -> str | None:
    """What a resume with another --steps or --lr-decay-from changes: the schedules that end at
    the last step (None: nothing)."""
    notes = []
    if (before := saved.get("lr_decay_from", 0)) != cfg.lr_decay_from:
        notes.append(f"note: --lr-decay-from {cfg.lr_decay_from}: from step {cfg.lr_decay_from} both "
                     f"learning rates fall linearly to 0 at step {cfg.steps} (before: "
                     f"{f'from step {before}' if before else 'constant rates'})")
    moved = [name for name, on in (
        ("the instance noise fade (set --instance-noise-steps to pin it)",
         cfg.instance_noise > 0 and cfg.instance_noise_steps == 0),
        ("the learning-rate decay", cfg.lr_decay_from > 0 and not notes)) if on]
    if saved.get("steps") != cfg.steps and moved:
        notes.append(f"note: --steps {cfg.steps} instead of {saved.get('steps')} also moves "
                     f"{' and '.join(moved)}, which ends at the last step: from here on this is not "
                     "the run it would have been")
    return "\n".join(notes) or None
