"""Where a training job stands: checkpoints (save, restore), --init weights, and cumulative totals.

A checkpoint holds the model, both optimizers, the progress (steps, seconds, planned total,
cost) and the job's configuration; a resumed job continues its schedule. The weights written at
the end record world_size, device, threads and the cumulative cost, ``core_hours`` (CPU:
seconds × threads × processes) or ``gpu_hours`` (seconds × processes), --init weights included.
"""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from shallowcodec.atomic import atomic_write
from shallowcodec.config import TrainArgumentError, TrainConfig
from shallowcodec.distributed import Process
from shallowcodec.hyperprior import ShallowHyperprior
from shallowcodec.model_files import model_card
from shallowcodec.quality import LmbdaScale
from shallowcodec.variable_rate import retable
from shallowcodec.zoo import LoadedModel, load_weights, save_weights


def run_hours(seconds: float, proc: Process) -> dict[str, float]:
    """Cost of ``seconds`` of training by all processes: ``core_hours`` (CPU: seconds × torch
    threads × processes / 3600) or ``gpu_hours`` (CUDA: seconds × processes / 3600)."""
    if proc.device.type == "cuda":
        return {"core_hours": 0.0, "gpu_hours": seconds * proc.world_size / 3600}
    return {"core_hours": seconds * torch.get_num_threads() * proc.world_size / 3600, "gpu_hours": 0.0}


@dataclass
class Progress:
    """How far a training job is: steps done, training seconds, the planned total (None until
    ``--steps 0`` has fitted it) and the cost so far (``core_hours``, ``gpu_hours``)."""

    step: int = 0
    seconds: float = 0.0
    planned: int | None = None
    hours: dict[str, float] = field(default_factory=lambda: {"core_hours": 0.0, "gpu_hours": 0.0})

    def after(self, step: int, planned: int | None, seconds: float, proc: Process) -> Progress:
        """This progress advanced to ``step`` by ``seconds`` of training on ``proc``'s job."""
        cost = run_hours(seconds, proc)
        return Progress(step, self.seconds + seconds, planned, {k: self.hours.get(k, 0.0) + v for k, v in cost.items()})


def save_checkpoint(path: Path, model: ShallowHyperprior, optimizers: tuple, progress: Progress,
                    cfg: TrainConfig) -> None:
    """Model, optimizers (network, aux), progress (step, seconds, planned total, cost) and configuration,
    written atomically (atomic.py).

    Raises:
        OSError: the file cannot be written.
    """
    optimizer, aux_optimizer = optimizers
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
        "step": progress.step, "seconds": progress.seconds, "planned_steps": progress.planned, "hours": progress.hours,
        "args": _args_json(cfg),
        "lmbda_scale": [model.gain.scale.lmbda_min, model.gain.scale.ratio] if model.variable_rate else None,
    }
    atomic_write(path, lambda f: torch.save(state, f))


def restore(cfg: TrainConfig, model: ShallowHyperprior, optimizers: tuple,
            proc: Process) -> tuple[Progress, Path | None]:
    """Load ``--resume`` (model, optimizers, progress) or copy ``--init`` weights.

    A resumed job keeps the planned total of its checkpoint (older checkpoints: their ``--steps``);
    a different ``--steps`` is ignored with a notice, a different recipe refused (:func:`check_recipe`).
    It also keeps the checkpoint's ``--init`` (when not given again), so a resumed fine-tune skips
    the 10 λ phase and counts the init's steps.

    Returns:
        (the starting progress, the --init weights the job started from or None).

    Raises:
        ValueError: the checkpoint is not one of this model, config and rate mode; or (from
            :func:`copy_from`) the --init weights do not fit the model.
        TrainArgumentError: options of the R-D objective differ from the checkpoint's.
        ModelNotFoundError: the --init weights cannot be loaded.
    """
    if not cfg.resume:
        if cfg.init:
            copy_from(model, load_weights(cfg.init), cfg.model)
        elif cfg.init_shared:
            copy_shared(model, load_weights(cfg.init_shared))
        return Progress(planned=cfg.steps or None), cfg.init
    try:
        state = torch.load(cfg.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizers[0].load_state_dict(state["optimizer"])
        optimizers[1].load_state_dict(state["aux_optimizer"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as e:
        raise ValueError(f"cannot resume from {cfg.resume}: not a checkpoint of this --model, --config and "
                         f"rate mode ({str(e).strip().splitlines()[0][:120]})") from None
    scale = state.get("lmbda_scale")  # absent from checkpoints written before λ scales: not checked
    if scale is not None and model.variable_rate and LmbdaScale(*scale) != model.gain.scale:
        raise ValueError(f"cannot resume from {cfg.resume}: its model has the λ scale {scale}, this --config "
                         f"[{model.gain.scale.lmbda_min:g}, {model.gain.scale.ratio:g}] (give its lmbda_scale)")
    stored_args = json.loads(state["args"])
    check_recipe(cfg, stored_args)
    init = cfg.init
    if init is None and stored_args.get("init") and Path(stored_args["init"]).is_file():
        init = Path(stored_args["init"])  # a resumed fine-tune: no 10 λ phase, cumulative totals
    stored = state.get("planned_steps", stored_args["steps"]) or None
    if stored and cfg.steps and cfg.steps != stored and proc.main:
        print(f"shallowcodec train: --resume continues the checkpoint's schedule of {stored} steps "
              f"(--steps {cfg.steps} ignored)", file=sys.stderr)
    hours = state.get("hours") or run_hours(state["seconds"], proc)  # older checkpoints: as run like this one
    return Progress(state["step"], state["seconds"], stored or cfg.steps or None, hours), init


def _args_json(cfg: TrainConfig) -> str:
    """A job's configuration as a checkpoint stores it (JSON; paths as text)."""
    return json.dumps(asdict(cfg), default=str)


#: Options that define what a run optimizes; a resumed run must give the checkpoint's (crop, batch,
#: precision, threads and time limits may change: the campaign moves from 128² to 256² crops).
RECIPE = ("quality", "lmbda", "lr", "quantizer", "train_qualities", "rate_weighting")


def check_recipe(cfg: TrainConfig, stored: dict) -> None:
    """Refuse to resume a checkpoint with another R-D recipe (:data:`RECIPE`): the weights it
    writes would record the new options for every step of the run.

    ``stored``: the checkpoint's ``args`` (options absent from older checkpoints are not checked).

    Raises:
        TrainArgumentError: the differing options, as given and as stored (one line).
    """
    given = json.loads(_args_json(cfg))  # as the checkpoint stored its own (tuples as lists)
    differ = [n for n in RECIPE if n in stored and stored[n] != given[n]]

    def shown(name: str, value) -> str:
        value = " ".join(map(str, value)) if isinstance(value, list) else value
        return f"--{name.replace('_', '-')} {'(all)' if value is None and name == 'train_qualities' else value}"

    if differ:
        raise TrainArgumentError(
            f"cannot resume from {cfg.resume}: it trained with {' '.join(shown(n, stored[n]) for n in differ)}, this "
            f"command gives {' '.join(shown(n, given[n]) for n in differ)} (a resumed run keeps its recipe; "
            "start a new run with --init to change it)")


def copy_from(model: ShallowHyperprior, init: LoadedModel, architecture: str) -> None:
    """Start from the parameters of other trained weights of the same architecture and widths.

    Fixed-λ weights may start a variable-rate model: its gain units then keep their initial
    values (variable_rate.GainUnits), which centre on the reference quality 3. Variable-rate
    weights of another λ scale (config ``lmbda_scale``) start it with their gains moved to the
    model's scale (variable_rate.retable).

    Raises:
        ValueError: the weights are of another architecture or other widths, or variable-rate
            weights for a fixed-λ model.
    """
    if init.architecture != architecture:
        raise ValueError(f"--init weights are {init.architecture}, not {architecture}")
    if init.variable_rate and not model.variable_rate:
        raise ValueError("--init weights are variable-rate; add --variable-rate")
    source = dict(init.model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in source:  # gain units of a variable-rate model started from fixed-λ weights
                continue
            if source[name].shape != param.shape:
                raise ValueError(f"--init weights have other widths ({name}: {tuple(source[name].shape)})")
            param.copy_(source[name])
        _retable_gains(model, init)


def _retable_gains(model: ShallowHyperprior, source: LoadedModel) -> None:
    """Move the gains just copied from variable-rate ``source`` to the model's λ scale, where they differ."""
    if source.variable_rate and model.variable_rate and source.model.gain.scale != model.gain.scale:
        for param in model.gain.parameters():
            param.copy_(retable(param, source.model.gain.scale, model.gain.scale))


def copy_shared(model: ShallowHyperprior, source: LoadedModel) -> list[str]:
    """Start every parameter outside g_s from another model's parameter of the same name and shape.

    jpeg-like and two-layer share g_a (ELIC), h_a, h_s, both priors and the gain units, so one
    starts the other with only its synthesis untrained; mbt2018-mean (CNN g_a) shares h_a, h_s,
    the priors and the gains (moved to the model's λ scale, as in :func:`copy_from`). Returns the
    names copied.

    Raises:
        ValueError: the weights share no parameter outside g_s with the model (other widths).
    """
    params = dict(source.model.named_parameters())
    copied = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("g_s.") and name in params and params[name].shape == param.shape:
                param.copy_(params[name])
                copied.append(name)
        _retable_gains(model, source)
    if not copied:
        raise ValueError(f"--init-shared weights ({source.architecture}) share no parameter with this model")
    return copied


def prior_training(init: Path | None) -> dict[str, float]:
    """Training already in the --init weights (zeros from scratch): total_steps, total_train_seconds,
    core_hours (if not recorded and no gpu_hours either: total_train_seconds / 3600, one core), gpu_hours.

    Raises:
        ModelNotFoundError: the --init weights cannot be read.
    """
    if init is None:
        return {"total_steps": 0, "total_train_seconds": 0.0, "core_hours": 0.0, "gpu_hours": 0.0}
    card = model_card(init)
    seconds = card.get("total_train_seconds", card.get("train_seconds", 0.0))
    return {"total_steps": card.get("total_steps", card.get("steps", 0)), "total_train_seconds": seconds,
            "core_hours": card.get("core_hours", 0.0 if "gpu_hours" in card else seconds / 3600),
            "gpu_hours": card.get("gpu_hours", 0.0)}


def save_trained_weights(cfg: TrainConfig, proc: Process, model: ShallowHyperprior, config: dict,
                         progress: Progress) -> None:
    """Write the weights (``cfg.out``) with the facts of the job, cumulative over the ``--init`` weights' training.

    Args:
        config: the builder's keyword arguments (widths, variable_rate).

    Raises:
        OSError: the file cannot be written.
    """
    prior = prior_training(cfg.init)
    hours = {k: round(prior[k] + v, 6) for k, v in progress.hours.items() if prior[k] + v > 0}
    qualities = {"train_qualities": list(cfg.train_qualities)} if cfg.train_qualities else {}
    save_weights(Path(cfg.out), model, cfg.model, config, cfg.quality, cfg.lmbda,
                 steps=progress.step, planned_steps=progress.planned, train_seconds=round(progress.seconds, 1),
                 crop=cfg.crop, batch_size=cfg.batch_size, quantizer=cfg.quantizer, lr=cfg.lr, bf16=cfg.bf16,
                 rate_weighting=cfg.rate_weighting, **qualities,
                 init=Path(cfg.init).name if cfg.init else None, world_size=proc.world_size,
                 device=proc.device.type, threads=torch.get_num_threads(),
                 total_steps=prior["total_steps"] + progress.step,
                 total_train_seconds=round(prior["total_train_seconds"] + progress.seconds, 1), **hours)
