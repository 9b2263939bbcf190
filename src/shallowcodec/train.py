"""Training: the paper's rate–distortion loss, schedules, random crops, checkpoints.

Recipe (Yang & Mandt 2023, Sec. 4, and their released code mandt-lab/shallow-ntc):

* loss = bpp + λ · MSE, MSE on the 0–255 scale; for λ ≤ 0.01 the first 20 % of steps use 10 λ;
* Adam, linear warm-up over the first 2 % of steps, learning rate × 0.1 after 80 %;
  global gradient-norm clip 1.0;
* quantization surrogate: uniform noise ("noise", the paper's default) or "mixed";
* the factorized prior's quantiles have their own auxiliary loss and optimizer (CompressAI).

Schedules are functions of the step over the *planned* total ``steps``, so a run stopped by
``--max-minutes`` and resumed from its checkpoint continues the same schedule.

Run as ``shallowcodec train ...`` or ``python -m shallowcodec.train ...``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from shallowcodec.codec import image_files, image_to_tensor
from shallowcodec.hyperprior import QUANTIZERS, MeanScaleHyperprior
from shallowcodec.zoo import ARCHITECTURES, LMBDAS, LoadedModel, build, load_weights, model_card, save_weights


def rd_loss(out: dict, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """Rate–distortion loss bpp + λ·MSE (paper Eq. 1; MSE on the 0–255 scale).

    Args:
        out: model output with ``x_hat`` (B, 3, H, W) and ``likelihoods`` {"y", "z"}.
        x: (B, 3, H, W) target in [0, 1].
        lmbda: λ.

    Returns:
        dict of scalars: ``loss``, ``bpp`` (bits per pixel, y + z), ``mse`` (0–255 scale),
        ``psnr`` (dB, peak 255).
    """
    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    bpp = bits / num_pixels
    mse = torch.mean((out["x_hat"] - x) ** 2) * 255**2
    return {"loss": bpp + lmbda * mse, "bpp": bpp, "mse": mse, "psnr": 10 * torch.log10(255**2 / mse.detach())}


def lmbda_at(step: int, steps: int, lmbda: float, from_scratch: bool = True) -> float:
    """λ schedule: 10 λ for the first 20 % of steps when λ ≤ 0.01, else λ.

    The boost keeps low-rate models from collapsing early; a run fine-tuned from trained
    weights (``from_scratch=False``) does not need it and uses λ throughout.
    """
    return 10 * lmbda if from_scratch and lmbda <= 0.01 and step < 0.2 * steps else lmbda


def lr_at(step: int, steps: int, lr: float) -> float:
    """Learning rate: linear warm-up over the first 2 % of steps, × 0.1 after 80 %."""
    warmup = max(1, int(0.02 * steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.1 if step >= 0.8 * steps else lr


class CropSampler:
    """Random square crops with random flips from a folder of images, decoded once into memory.

    Images whose shorter side exceeds ``max_side`` are downscaled (Lanczos) so that it equals
    ``max_side``: large photos carry sensor noise and JPEG artefacts that downscaling removes,
    and the crops then cover more scene content. Images smaller than ``crop`` are skipped.

    Raises:
        ValueError: if the folder holds no usable image.
    """

    def __init__(self, folder: Path, crop: int, max_side: int = 512, seed: int = 0):
        self.crop = crop
        self.rng = random.Random(seed)
        self.images = [im for im in (_load_rgb(p, max_side) for p in image_files(folder))
                       if min(im.shape[1:]) >= crop]
        if not self.images:
            raise ValueError(f"no image of at least {crop}×{crop} pixels in {folder}")

    def batch(self, size: int) -> Tensor:
        """A (size, 3, crop, crop) float batch in [0, 1]."""
        return torch.stack([self._crop() for _ in range(size)]).float().div_(255)

    def _crop(self) -> Tensor:
        im = self.rng.choice(self.images)
        top = self.rng.randrange(im.shape[1] - self.crop + 1)
        left = self.rng.randrange(im.shape[2] - self.crop + 1)
        patch = im[:, top : top + self.crop, left : left + self.crop]
        if self.rng.random() < 0.5:
            patch = patch.flip(2)
        return patch


def _load_rgb(path: Path, max_side: int) -> Tensor:
    with Image.open(path) as im:
        scale = max_side / min(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        return image_to_tensor(im)[0]


def make_optimizers(model: MeanScaleHyperprior, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for the network and a separate Adam (lr 1e-3) for the prior's quantiles."""
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return torch.optim.Adam(net, lr=lr), torch.optim.Adam(aux, lr=1e-3)


def save_checkpoint(path: Path, model, optimizer, aux_optimizer, step: int, args: dict, seconds: float) -> None:
    """Model, optimizers, step, RNG state and run arguments; written to a temp file, then renamed."""
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
        "step": step, "args": json.dumps(args, default=str), "seconds": seconds, "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) one training job; returns the path of the written weights file."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.loads(args.config)
    model = build(args.model, **config)
    optimizer, aux_optimizer = make_optimizers(model, args.lr)
    ckpt_path = Path(args.checkpoint or f"{args.out}.ckpt")
    step, seconds = 0, 0.0
    if args.resume:
        state = torch.load(args.resume, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        aux_optimizer.load_state_dict(state["aux_optimizer"])
        step, seconds = state["step"], state["seconds"]
        torch.set_rng_state(state["torch_rng"])
    elif args.init:
        _copy_from(model, load_weights(args.init), args.model)
    sampler = CropSampler(args.data, args.crop, seed=args.seed + step)
    model.train()
    start, last_ckpt = time.monotonic(), time.monotonic()
    bar = tqdm(total=args.steps, initial=step, desc=f"{args.model} λ={args.lmbda}", dynamic_ncols=True,
               disable=args.quiet, mininterval=1 if sys.stderr.isatty() else 30)
    while step < args.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        x = sampler.batch(args.batch_size)
        out = model(x, quantizer=args.quantizer)
        terms = rd_loss(out, x, lmbda_at(step, args.steps, args.lmbda, from_scratch=args.init is None))
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        model.aux_loss().backward()
        aux_optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(refresh=False, loss=f"{terms['loss'].item():.3f}", bpp=f"{terms['bpp'].item():.3f}",
                        psnr=f"{terms['psnr'].item():.2f}")
        elapsed = time.monotonic() - start
        if time.monotonic() - last_ckpt > 60 * args.checkpoint_minutes:
            save_checkpoint(ckpt_path, model, optimizer, aux_optimizer, step, vars(args), seconds + elapsed)
            last_ckpt = time.monotonic()
        if args.max_minutes and elapsed > 60 * args.max_minutes:
            break
    bar.close()
    seconds += time.monotonic() - start
    save_checkpoint(ckpt_path, model, optimizer, aux_optimizer, step, vars(args), seconds)
    model.eval()
    prior_steps, prior_seconds = _prior_training(args.init)
    save_weights(Path(args.out), model, args.model, config, args.quality, args.lmbda,
                 steps=step, planned_steps=args.steps, train_seconds=round(seconds, 1), crop=args.crop,
                 batch_size=args.batch_size, quantizer=args.quantizer, lr=args.lr,
                 init=Path(args.init).name if args.init else None,
                 total_steps=prior_steps + step, total_train_seconds=round(prior_seconds + seconds, 1))
    return Path(args.out)


def _copy_from(model: MeanScaleHyperprior, init: LoadedModel, architecture: str) -> None:
    """Start from the parameters of other trained weights of the same architecture and widths.

    Raises:
        ValueError: the weights are of another architecture or other widths.
    """
    if init.architecture != architecture:
        raise ValueError(f"--init weights are {init.architecture}, not {architecture}")
    source = dict(init.model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if source[name].shape != param.shape:
                raise ValueError(f"--init weights have other widths ({name}: {tuple(source[name].shape)})")
            param.copy_(source[name])


def _prior_training(init: Path | None) -> tuple[int, float]:
    """Steps and seconds already spent on the --init weights (0 when training from scratch)."""
    if init is None:
        return 0, 0.0
    card = model_card(init)
    return card.get("total_steps", card["steps"]), card.get("total_train_seconds", card["train_seconds"])


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of ``shallowcodec train`` (also used by ``python -m shallowcodec.train``)."""
    p = parser or argparse.ArgumentParser(prog="shallowcodec train", description="Train a model at one λ.")
    p.add_argument("--model", required=True, choices=list(ARCHITECTURES))
    p.add_argument("--lmbda", type=float, help="λ (default: the quality's λ)")
    p.add_argument("--quality", type=int, required=True, choices=range(len(LMBDAS)),
                   help="quality index 0–6 stored in the weights (λ = 0.00125 · 2^q)")
    p.add_argument("--data", type=Path, required=True, help="folder of training images")
    p.add_argument("--steps", type=int, required=True, help="planned total steps (schedules use it)")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--config", default="{}", help='JSON widths, e.g. \'{"N": 96, "M": 192}\'')
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--quantizer", choices=QUANTIZERS, default="noise")
    p.add_argument("--init", type=Path, help="start from these weights (fine-tuning to another λ)")
    p.add_argument("--resume", type=Path, help="checkpoint to resume")
    p.add_argument("--checkpoint", type=Path, help="checkpoint path (default: OUT.ckpt)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, help="stop cleanly (with a checkpoint) after this long")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> Path:
    """Fill defaults that depend on other arguments, then train."""
    if args.lmbda is None:
        args.lmbda = LMBDAS[args.quality]
    if args.crop % 64:
        raise ValueError(f"--crop must be a multiple of 64, got {args.crop}")
    return train(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(run(args))
    except (ValueError, OSError) as e:
        print(f"shallowcodec train: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
