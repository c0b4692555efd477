"""TrainConfig: every knob of gan-train, one comment each; saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

LOSSES = ("ns", "hinge", "lsgan")
ON_FAILURE = ("warn", "rollback", "stop")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    data: str = "builtin:avatars"  # image folder, ImageFolder-style tree, .zip, or builtin:avatars
    out: str = "runs/gan"  # run folder: checkpoints, samples, events.jsonl, report.html
    resolution: int = 64  # image size: 32, 64 or 128
    channels: int = 3  # 3 for RGB, 1 for greyscale
    z_dim: int = 100  # latent size
    g_width: int = 64  # ngf: width of G's last hidden layer (doubling towards z)
    d_width: int = 64  # ndf: width of D's first layer (doubling towards the score)
    batch_size: int = 64  # images per step (per process under torchrun)
    steps: int = 5000  # generator steps
    lr_g: float = 2e-4  # Adam learning rate of G (DCGAN paper)
    lr_d: float = 2e-4  # Adam learning rate of D
    beta1: float = 0.5  # Adam beta1 (DCGAN paper; 0.9 is a classic cause of oscillation)
    beta2: float = 0.999  # Adam beta2
    loss: str = "ns"  # ns (non-saturating BCE), hinge, lsgan
    label_smoothing: float = 0.0  # one-sided: real targets become 1 - s (e.g. 0.1)
    n_d: int = 1  # D steps per G step
    r1_gamma: float = 0.0  # weight of the R1 gradient penalty on real images (0: off)
    ema: float = 0.999  # EMA decay of G's weights (0: off); the EMA generator is what is served
    precision: str = "fp32"  # fp32, or autocast bf16 (CPU/CUDA) / fp16 (CUDA)
    channels_last: bool = False  # channels-last memory format for the convolutions
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    seed: int = 0  # one seed decides init, data order and every z
    ckpt_every: int = 500  # steps between checkpoints
    keep: int = 3  # checkpoints kept besides `best`
    sample_every: int = 250  # steps between fixed-noise sample grids and health checks
    log_every: int = 50  # steps between log lines and weight checks
    window: int = 200  # steps the domination detector averages over
    warmup: int = 500  # steps before the domination, collapse, black and flat detectors may fire
    on_failure: str = "rollback"  # warn, rollback (to the last healthy checkpoint, lr x0.5), stop
    max_rollbacks: int = 3  # rollbacks before giving up
    workers: int = 0  # DataLoader worker processes
    dataset_size: int = 50_000  # items of builtin:avatars
    device: str = "auto"  # auto, cpu or cuda

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> TrainConfig:
        from gan_serve.errors import InputError

        checks = [
            (self.resolution in (32, 64, 128), "--resolution must be 32, 64 or 128"),
            (self.channels in (1, 3), "--channels must be 1 or 3"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}"),
            (self.on_failure in ON_FAILURE, f"--on-failure must be one of {', '.join(ON_FAILURE)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (min(self.steps, self.batch_size, self.n_d) >= 1,
             "--steps, --batch-size and --n-d must be >= 1"),
            (self.z_dim >= 1 and self.g_width >= 1 and self.d_width >= 1, "--z-dim and widths must be >= 1"),
            (0.0 <= self.label_smoothing < 0.5, "--label-smoothing must be in [0, 0.5)"),
            (0.0 <= self.ema < 1.0, "--ema must be in [0, 1)"),
            (min(self.ckpt_every, self.sample_every, self.log_every, self.window, self.keep) >= 1,
             "--ckpt-every, --sample-every, --log-every, --window and --keep must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return self
