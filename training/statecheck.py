"""What a state.pt may hold, checked whole before anything is built from it (checkpoints.load_state).

A state.pt comes from anywhere (a packed run from a repository, a run folder copied from another
machine). weights_only loading runs no code, but the file still declares sizes, types and values:
a width of 100,000 would ask for terabytes, a stride-0 tensor declares gigabytes in a few bytes,
a step given as a string fails deep inside the run. Here every field is checked against the
config limits (TrainConfig.validate), every tensor against the shape the config gives it and
against the bytes that back it, and every number and list against what gan-train writes. A state
that fails is damaged: ValueError naming the first fault (load_state makes it a CheckpointError,
and --resume goes back to the newest intact checkpoint).
"""

from __future__ import annotations

import functools
import json
import math

import torch

from gan_serve.errors import InputError
from gan_serve.torchfile import view_fault

from .config import TrainConfig
from .monitor import Event

# every key state_dict writes (loop.Trainer.state_dict)
STATE_KEYS = ("version", "step", "config", "G", "D", "G_ema", "opt_g", "opt_d", "scaler_g", "scaler_d",
              "lr_scale", "rollbacks", "healthy", "best", "monitor", "history", "evals", "events")
ARCH_FIELDS = ("resolution", "channels", "z_dim", "g_width", "d_width", "d_batch_norm", "d_bias",
               "spectral_norm", "pack")  # the fields that decide the networks' shapes
FLOATS = (torch.float32, torch.float16, torch.bfloat16)  # fp32 runs, packed runs (pack.py)
ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}
HISTORY_KEYS = {"d_loss", "g_loss", "d_real", "d_fake", "images_per_s"}  # what the report draws
SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
Shapes = dict[str, tuple[tuple[int, ...], bool]]  # key -> (shape, floating point)


def check_state(s: object, version: int) -> TrainConfig:
    """The state's config, once every field of `s` is what gan-train writes; ValueError if not."""
    if not isinstance(s, dict):
        raise ValueError(f"not a dict but {type(s).__name__}")
    missing = [k for k in STATE_KEYS if k not in s]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    _int(s["version"], version, version, "version")
    cfg = _config(s["config"])
    _int(s["step"], 0, cfg.steps, "step")
    g_keys, d_keys, g_params, d_params = _shapes(tuple(getattr(cfg, k) for k in ARCH_FIELDS))
    _weights(s["G"], g_keys, "G")
    _weights(s["D"], d_keys, "D")
    if s["G_ema"] != {}:  # {} when the run has no EMA
        _weights(s["G_ema"], g_keys, "G_ema")
    _adam(s["opt_g"], g_params, "opt_g")
    _adam(s["opt_d"], d_params, "opt_d")
    for name in ("scaler_g", "scaler_d"):
        _scaler(s[name], name, cfg.precision == "fp16")
    if not _number(s["lr_scale"]) or not 0 < s["lr_scale"] <= 1:
        raise ValueError(f"lr_scale must be a number in (0, 1], got {s['lr_scale']!r:.40}")
    _int(s["rollbacks"], 0, 10**6, "rollbacks")
    if not isinstance(s["healthy"], bool):
        raise ValueError(f"healthy must be true or false, got {s['healthy']!r:.40}")
    _json_fields(s)
    return cfg


def _int(v: object, lo: int, hi: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer from {lo:,} to {hi:,}, got {v!r:.40}")
    return v


def _numeric(v: object) -> bool:
    """An int or a float (NaN and infinities included), not a bool."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number(v: object) -> bool:
    return _numeric(v) and math.isfinite(v)


def _loads(text: object, name: str) -> object:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be JSON text, got {type(text).__name__}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise ValueError(f"{name} is not readable JSON") from None


def _config(text: object) -> TrainConfig:
    d = _loads(text, "config")
    if not isinstance(d, dict):
        raise ValueError("config must be a JSON object")
    try:
        return TrainConfig.from_dict(d).validate()
    except InputError as exc:
        raise ValueError(f"its config: {exc}") from None


@functools.lru_cache(maxsize=8)
def _shapes(arch: tuple) -> tuple[Shapes, Shapes, list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The state-dict shapes and the parameter shapes (the optimizers' order) of G and D, built
    on the meta device: nothing is allocated, whatever the (already limited) config says."""
    from .models import build

    with torch.device("meta"):
        G, D = build(TrainConfig(**dict(zip(ARCH_FIELDS, arch, strict=True))))

    def keys(m: torch.nn.Module) -> Shapes:
        return {k: (tuple(v.shape), v.is_floating_point()) for k, v in m.state_dict().items()}

    params = [[tuple(p.shape) for p in m.parameters()] for m in (G, D)]
    return keys(G), keys(D), params[0], params[1]


def _tensor(t: object, shape: tuple[int, ...], floating: bool, name: str) -> None:
    """A plain CPU tensor of `shape` whose bytes are all in the file: a stride-0 expansion or a
    view declaring more elements than its storage holds is refused, as are sparse, quantized,
    nested and meta tensors and any dtype gan-train does not write."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
    if (fault := view_fault(t)) is not None:  # the file reader's own rule, for states built in memory too
        raise ValueError(f"{name} {fault}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; its config gives {shape}")
    if (t.dtype in FLOATS) is not floating or (not floating and t.dtype != torch.int64):
        raise ValueError(f"{name} is {t.dtype}; expected {'a float' if floating else 'int64'}")


def _weights(sd: object, shapes: Shapes, name: str) -> None:
    if not isinstance(sd, dict) or sd.keys() != shapes.keys():
        have = set(sd) if isinstance(sd, dict) else set()
        odd = sorted(map(str, have ^ shapes.keys()))[:3]
        raise ValueError(f"{name} does not hold the weights its config gives (keys {odd} differ)")
    for k, (shape, floating) in shapes.items():
        _tensor(sd[k], shape, floating, f"{name}.{k}")


def _adam(opt: object, params: list[tuple[int, ...]], name: str) -> None:
    """An Adam state dict for these parameters: one group over all of them, its settings of
    the types Adam takes, and per parameter a step and two moments of the parameter's shape."""
    if not isinstance(opt, dict) or opt.keys() != {"state", "param_groups"}:
        raise ValueError(f"{name} is not an optimizer state (state, param_groups)")
    groups, state = opt["param_groups"], opt["state"]
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
        raise ValueError(f"{name} must hold one parameter group")
    _adam_group(groups[0], len(params), name)
    if not isinstance(state, dict) or not all(isinstance(i, int) and 0 <= i < len(params) for i in state):
        raise ValueError(f"{name}.state must map parameter numbers 0 to {len(params) - 1} to their state")
    for i, moments in state.items():
        if not isinstance(moments, dict) or moments.keys() != ADAM_STATE:
            raise ValueError(f"{name}.state[{i}] must hold {', '.join(sorted(ADAM_STATE))}")
        step = moments["step"]
        if isinstance(step, torch.Tensor):
            _tensor(step, (), True, f"{name}.state[{i}].step")
            step = step.item()
        if not _number(step) or step < 0:
            raise ValueError(f"{name}.state[{i}].step must be a number >= 0")
        for k in ("exp_avg", "exp_avg_sq"):
            _tensor(moments[k], params[i], True, f"{name}.state[{i}].{k}")


def _adam_group(group: dict, n: int, name: str) -> None:
    defaults = torch.optim.Adam([torch.zeros(1)]).defaults  # what the switches are when off
    if not isinstance(group.get("params"), list) or group["params"] != list(range(n)):
        raise ValueError(f"{name}'s parameter group must list its {n} parameters in order")
    betas = group.get("betas")
    if not (isinstance(betas, list | tuple) and len(betas) == 2
            and all(_number(b) and 0 <= b < 1 for b in betas)):
        raise ValueError(f"{name}'s betas must be two numbers in [0, 1)")
    for k, v in group.items():
        if k in ("params", "betas"):
            continue
        if k in ("lr", "initial_lr", "eps", "weight_decay"):
            if not _number(v) or v < 0:
                raise ValueError(f"{name}'s {k} must be a finite number >= 0, got {v!r:.40}")
        elif not (v is None or isinstance(v, bool | int | float | str)):
            raise ValueError(f"{name}'s {k} must be a plain value, not {type(v).__name__}")
        elif k in defaults and v != defaults[k]:  # amsgrad, foreach, capturable, ...: off
            raise ValueError(f"{name}'s {k} must be {defaults[k]!r} (gan-train's Adam), got {v!r:.40}")


def _scaler(sd: object, name: str, enabled: bool) -> None:
    """A GradScaler's state: empty when it was off, else its five numbers (fp16 runs)."""
    if sd == {} and not enabled:
        return
    if not isinstance(sd, dict) or sd.keys() != SCALER_KEYS or not all(map(_number, sd.values())) \
            or not sd["scale"] > 0:
        raise ValueError(f"{name} must be a GradScaler state ({', '.join(sorted(SCALER_KEYS))}: "
                         "finite numbers, scale > 0)" + (" for an fp16 run" if enabled else ""))


def _json_fields(s: dict) -> None:
    """best, monitor, history, evals and events: JSON of the shapes the run writes."""
    best = _loads(s["best"], "best")
    if best is not None:
        _row(best, "best")
    monitor = _loads(s["monitor"], "monitor")
    if not isinstance(monitor, dict) or not monitor.keys() <= {"d_loss", "g_loss", "d_fake", "seen"}:
        raise ValueError("monitor must be an object of d_loss, g_loss, d_fake and seen")
    for k in ("d_loss", "g_loss", "d_fake"):
        v = monitor.get(k, [])
        if not isinstance(v, list) or not all(map(_numeric, v)):
            raise ValueError(f"monitor.{k} must be a list of numbers")
    seen = monitor.get("seen", {})
    counts = [kinds.values() if isinstance(kinds, dict) else [None] for kinds in seen.values()] \
        if isinstance(seen, dict) else [[None]]
    if not all(isinstance(n, int) and not isinstance(n, bool) for c in counts for n in c):
        raise ValueError("monitor.seen must map checks to counts per kind")
    for name, needs in (("history", HISTORY_KEYS), ("evals", set())):
        rows = _loads(s[name], name)
        if not isinstance(rows, list):
            raise ValueError(f"{name} must be a list")
        for row in rows:
            _row(row, name)
            want = {"high_quality"} if "coverage" in row else needs  # drawn with its good samples
            if not want <= row.keys():
                raise ValueError(f"{name} rows must hold {', '.join(sorted(want))}")
    events = _loads(s["events"], "events")
    if not isinstance(events, list):
        raise ValueError("events must be a list")
    for e in events:
        try:
            event = Event(**e)
        except TypeError:
            raise ValueError("events must be objects of step, kind, message, fatal, note") from None
        if not (isinstance(event.step, int) and isinstance(event.fatal, bool)
                and all(isinstance(x, str) for x in (event.kind, event.message, event.note))):
            raise ValueError("an event's step must be an integer, fatal true or false, the rest text")


def _row(row: object, name: str) -> None:
    """A history, evals or best row: numbers (or null: an unscored checkpoint), an integer step."""
    if not (isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool)
            and all(v is None or _numeric(v) for v in row.values())):
        raise ValueError(f"{name} must hold objects of numbers with an integer step")
