"""Training data: a decoded image cache, random crops from it, and the loader that batches them.

* cache: every image of each ``--data`` folder is decoded once, downscaled (Lanczos) to a shorter
  side of at most ``--max-side`` pixels and stored as an uncompressed (H, W, 3) uint8 ``.npy`` in
  that folder's cache ``<--cache>/<sha256 of the data path, 12 hex>-<max side>`` (``--cache``
  default ``~/.cache/shallowcodec``), keyed by file name, size and mtime; nothing is written into
  a data folder;
* :class:`RandomCrops`: an endless stream of random ``--crop`` squares with random horizontal
  flips, read from the memory-mapped caches of all folders (an image uniformly), seeded per
  (seed, rank, worker, starting step);
* a DataLoader with ``--workers`` processes; the model sees float (B, 3, crop, crop) batches in
  [0, 1], B = ``--batch-size`` per process.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from shallowcodec.atomic import atomic_write
from shallowcodec.config import TrainConfig
from shallowcodec.distributed import Process, rank0_first
from shallowcodec.images import image_files, image_to_tensor


def default_cache(data: Path, max_side: int, root: Path | None = None) -> Path:
    """The cache folder of one data folder: ``<root>/<first 12 hex digits of sha256(resolved data
    path)>-<max_side>``, ``root`` by default ``~/.cache/shallowcodec``."""
    digest = hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:12]
    return Path(root or Path.home() / ".cache" / "shallowcodec") / f"{digest}-{max_side}"


def build_cache(data: Path, cache: Path, max_side: int, progress: bool = False) -> list[Path]:
    """Decode every image of ``data`` once into ``cache``; returns the entries in image-name order.

    An entry is an uncompressed (H, W, 3) uint8 ``.npy`` of the image downscaled (Lanczos) to a
    shorter side of at most ``max_side`` pixels, named ``<image name>.<bytes>.<mtime ns>.npy``:
    a changed image gets a new entry, and its outdated one is deleted. Entries are written
    atomically (atomic.py), so runs sharing a cache never read a partial file.

    Raises:
        ValueError: the cache is the data folder or inside it; images.ImageError (a ValueError):
            no such data folder.
    """
    data, cache = Path(data).resolve(), Path(cache).expanduser().resolve()
    if cache == data or data in cache.parents:
        raise ValueError(f"the cache {cache} must be outside the data folder {data}")
    files = image_files(data)
    cache.mkdir(parents=True, exist_ok=True)
    entries = [cache / _entry_name(f) for f in files]
    missing = [(f, e) for f, e in zip(files, entries) if not e.exists()]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes and resizes without the GIL
        written = pool.map(lambda job: _write_entry(*job, max_side), missing)
        for problem in tqdm(written, total=len(missing), desc=f"caching {data.name}",
                            disable=not (progress and missing)):
            if problem:
                print(f"shallowcodec train: skipping {problem}", file=sys.stderr)
    _delete_outdated(cache, entries)
    return [e for e in entries if e.exists()]


def _entry_name(image: Path) -> str:
    stat = image.stat()
    return f"{image.name}.{stat.st_size}.{stat.st_mtime_ns}.npy"


def _write_entry(image: Path, entry: Path, max_side: int) -> str | None:
    """Decode ``image``, downscale it (Lanczos) to a shorter side ≤ ``max_side``, store (H, W, 3) uint8.

    Returns None, or for an unreadable image a one-line reason naming it (the image is skipped).
    """
    try:
        with Image.open(image) as im:
            scale = max_side / min(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            pixels = image_to_tensor(im)[0].permute(1, 2, 0).numpy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"{image}: {e}"
    atomic_write(entry, lambda f: np.save(f, np.ascontiguousarray(pixels)))
    return None


def _delete_outdated(cache: Path, entries: list[Path]) -> None:
    """Delete the entries of the current images' names that have another size or mtime."""
    current = {e.name for e in entries}
    names = {e.name.rsplit(".", 3)[0] for e in entries}
    for old in cache.glob("*.npy"):
        if old.name not in current and old.name.rsplit(".", 3)[0] in names:
            old.unlink(missing_ok=True)


def crop_sources(entries: list[Path], crop: int) -> list[Path]:
    """The cache entries whose both sides are at least ``crop`` pixels (read from the .npy headers)."""
    return [e for e in entries if min(np.load(e, mmap_mode="r").shape[:2]) >= crop]


class RandomCrops(IterableDataset):
    """Endless stream of random square crops, each (3, crop, crop) uint8, with random horizontal flips.

    Crops come from memory-mapped (H, W, 3) uint8 ``.npy`` files (:func:`build_cache`): an image
    uniformly, then a position uniformly, then a flip with probability ½. Each (seed, rank,
    DataLoader worker, starting step) draws its own random stream, so the processes of a torchrun
    job, the workers of a loader and a resumed run do not repeat each other's crops.
    """

    def __init__(self, files: list[Path], crop: int, seed: int = 0, rank: int = 0, start_step: int = 0):
        self.files, self.crop = list(files), crop
        self.seed, self.rank, self.start_step = seed, rank, start_step

    def __iter__(self) -> Iterator[Tensor]:
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, worker.id if worker else 0, self.start_step])
        images = [np.load(f, mmap_mode="r") for f in self.files]
        while True:
            image = images[rng.integers(len(images))]
            top, left = (int(rng.integers(n - self.crop + 1)) for n in image.shape[:2])
            patch = image[top : top + self.crop, left : left + self.crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            yield torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))


def data_stream(cfg: TrainConfig, proc: Process, step: int) -> Iterator[Tensor]:
    """This process's training batches: float (batch_size, 3, crop, crop) in [0, 1] on its device.

    Rank 0 builds the cache first; the other ranks then find it complete (or, on another node,
    complete their own). Crops travel as uint8 and become float on the device.

    Raises:
        ValueError: no image of at least crop × crop pixels (after downscaling) in the ``cfg.data`` folders.
    """
    with rank0_first(proc):
        entries = [e for folder in cfg.data
                   for e in build_cache(folder, default_cache(folder, cfg.max_side, cfg.cache), cfg.max_side,
                                        progress=proc.main and not cfg.quiet)]
    sources = crop_sources(entries, cfg.crop)
    if not sources:
        raise ValueError(f"no image of at least {cfg.crop}×{cfg.crop} pixels in {' '.join(map(str, cfg.data))}")
    crops = RandomCrops(sources, cfg.crop, seed=cfg.seed, rank=proc.rank, start_step=step)
    loader = DataLoader(crops, batch_size=cfg.batch_size, num_workers=cfg.workers,
                        pin_memory=proc.device.type == "cuda", persistent_workers=cfg.workers > 0)
    return (x.to(proc.device, non_blocking=True).float().div_(255).contiguous(memory_format=torch.channels_last)
            for x in loader)
