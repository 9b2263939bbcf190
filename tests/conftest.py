"""Shared fixtures: the photos24 folder, a tiny (untrained but real) codec, photo crops."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch

from shallowcodec import codec, images, zoo

#: photos24 lives in ../shared beside the repository (same layout in the CI clone).
PHOTOS24 = Path(__file__).resolve().parents[1].parent / "shared/data/photos24"
#: The photo most tests use (768×512, RGB).
PHOTO = "eval03_sail.png"
#: Widths of the tiny models: fast on two CPU cores, yet the full architecture.
TINY = {"N": 8, "M": 16}


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread for the suite: the models are tiny, and a thread pool competing with other
    jobs for two cores slows some ops (MS-SSIM) by ~50×."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def photos24() -> Path:
    if not PHOTOS24.is_dir():
        pytest.skip(f"photos24 not found at {PHOTOS24}")
    return PHOTOS24


@lru_cache(maxsize=8)
def _read(path: Path) -> torch.Tensor:
    x, notice = images.read_image(path)
    assert notice is None, notice  # photos24 images are plain RGB
    return x


@pytest.fixture(scope="session")
def photo_crop(photos24):
    """``photo_crop(h, w, top=0, left=0, name=PHOTO)`` → a (3, h, w) uint8 crop of a photos24 image."""

    def crop(h: int, w: int, top: int = 0, left: int = 0, name: str = PHOTO) -> torch.Tensor:
        x = _read(photos24 / name)
        assert top + h <= x.shape[1] and left + w <= x.shape[2], "crop outside the photo"
        return x[:, top : top + h, left : left + w].contiguous()

    return crop


def make_codec(path: Path, architecture: str = "two-layer", seed: int = 0, quality: int = 3,
               lmbda: float = 0.01, **config) -> codec.Codec:
    """Build a seeded tiny model, save it with zoo.save_weights and load it back as a Codec
    (``variable_rate=True`` in ``config``: a variable-rate model, used at ``quality``)."""
    config = {**TINY, **config}
    torch.manual_seed(seed)
    model = zoo.build(architecture, **config)
    model.eval().update(force=True)
    zoo.save_weights(path, model, architecture, config, quality, lmbda)
    return codec.Codec(zoo.load_weights(path), quality if config.get("variable_rate") else None)


@pytest.fixture
def codec_factory(tmp_path):
    """``codec_factory(name, architecture="two-layer", seed=0, quality=3, lmbda=0.01, **config)``:
    a tiny codec whose weights file is ``tmp_path / name``."""

    def factory(name: str, **kwargs) -> codec.Codec:
        return make_codec(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def tiny_codec(codec_factory) -> codec.Codec:
    """A tiny two-layer codec (N=8, M=16, seed 0, quality 3, λ=0.01) loaded from a real weights file."""
    return codec_factory("tiny.safetensors")
