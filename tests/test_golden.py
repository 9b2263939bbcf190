"""Golden bitstreams: files of the embedded models made on another machine decode to the same ŷ here.

tests/data/golden/make.py wrote them where the weights were embedded (expected.json's
``made_on`` names that CPU's kernel level); this machine's numpy decoder and torch model must
give the same ŷ bit for bit (sha256) and the same image within ±1 level (PSNR to 0.01 dB),
whatever its CPU's kernels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import pytest

from shallowcodec import container
from shallowcodec.codec import Codec
from shallowcodec.decoder import embedded_decoder
from shallowcodec.zoo import LoadedModel, load_embedded

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())["files"]


@pytest.fixture(scope="module")
def golden():
    """tests/data/golden/make.py as a module (its crop and PSNR helpers)."""
    spec = importlib.util.spec_from_file_location("golden_make", GOLDEN / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=3)
def torch_model(architecture: str) -> LoadedModel:
    """The embedded torch model, loaded once per architecture."""
    return load_embedded(architecture)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_file_decodes_to_its_y_hat(name, photos24, golden):
    expected, data = EXPECTED[name], (GOLDEN / name).read_bytes()
    stream = container.unpack(data)
    architecture = stream.header.architecture
    decoder = embedded_decoder(architecture)
    assert stream.header.weights_id == decoder.weights_id, (
        f"{name} is of other {architecture} weights: run python tests/data/golden/make.py after embedding")
    y_hat = decoder.decode_latents(stream)
    assert hashlib.sha256(y_hat.tobytes()).hexdigest() == expected["y_hat_sha256"]
    x = golden.crop(*expected["crop"])
    pixels = decoder.render(y_hat, stream.header.quality, *x.shape[1:])
    assert golden.psnr(pixels, x) == pytest.approx(expected["psnr"], abs=0.01)
    torch_y_hat = Codec(torch_model(architecture), stream.header.quality).decode_latents(stream).numpy()
    assert torch_y_hat.dtype == y_hat.dtype and hashlib.sha256(torch_y_hat.tobytes()).hexdigest() == expected["y_hat_sha256"]
