"""Architectures and weights files (shallowcodec.zoo): build, save/load, metadata, embedded models."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import save

from shallowcodec import codec, model_files, quality, zoo
from shallowcodec.model_files import ModelNotFoundError


def test_save_load_weights_round_trip(tiny_codec, tmp_path):
    loaded = tiny_codec.loaded
    assert (loaded.architecture, loaded.quality, loaded.lmbda) == ("two-layer", 3, 0.01)
    assert json.loads(loaded.metadata["config"]) == {"N": 8, "M": 16}
    assert not loaded.model.training
    torch.manual_seed(0)
    original = zoo.build("two-layer", N=8, M=16)
    for name, p in original.named_parameters():  # stored as fp16
        assert torch.equal(dict(loaded.model.named_parameters())[name], p.detach().half().float()), name


@pytest.mark.parametrize("content", [b"", b"abc", bytes(random.Random(0).randbytes(4096)),
                                     b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}       "])
def test_load_weights_rejects_garbage(tmp_path, content):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelNotFoundError, match="cannot load weights"):
        zoo.load_weights(path)


def test_load_weights_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelNotFoundError):
        zoo.load_weights(tmp_path / "missing.safetensors")
    # a valid safetensors file, but not a shallowcodec one (no metadata / wrong names)
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(save({"w": torch.zeros(2)}))
    with pytest.raises(ModelNotFoundError):
        zoo.load_weights(path)
    path.write_bytes(save({"w": torch.zeros(2)}, metadata={"architecture": "two-layer", "quality": "3",
                                                          "lmbda": "0.01", "config": '{"N": 8, "M": 16}'}))
    with pytest.raises(ModelNotFoundError, match="parameter names"):
        zoo.load_weights(path)
    path.write_bytes(save({"w": torch.zeros(2)}, metadata={"architecture": "nope", "quality": "3",
                                                          "lmbda": "0.01", "config": "{}"}))
    with pytest.raises(ModelNotFoundError, match="nope"):
        zoo.load_weights(path)


def _tiny_tensors(M: int = 16) -> dict:
    torch.manual_seed(0)
    return {k: v.detach().half().contiguous() for k, v in zoo.build("two-layer", N=8, M=M).named_parameters()}


@pytest.mark.parametrize("case", ["no-quality", "bad-lmbda", "shape-mismatch"])
def test_load_weights_rejects_inconsistent_shallowcodec_files(tmp_path, case):
    meta = {"architecture": "two-layer", "quality": "3", "lmbda": "0.01", "config": '{"N": 8, "M": 16}'}
    tensors = _tiny_tensors()
    if case == "no-quality":
        del meta["quality"]
    elif case == "bad-lmbda":
        meta["lmbda"] = "much"
    else:
        tensors = _tiny_tensors(M=32)  # names match, shapes do not
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(save(tensors, metadata=meta))
    with pytest.raises(ModelNotFoundError):
        zoo.load_weights(path)


def test_build_and_load_embedded_unknown_names():
    with pytest.raises(ModelNotFoundError, match="nope"):
        zoo.build("nope")
    with pytest.raises(ModelNotFoundError, match="nope"):
        zoo.load_embedded("nope")
    with pytest.raises(ModelNotFoundError, match="quality must be a number in 0..6, got 7"):
        codec.load("two-layer", 7)
    with pytest.raises(ModelNotFoundError, match="no embedded weights"):
        codec.load("two-layer-nores")  # a known architecture without embedded weights
    assert issubclass(ModelNotFoundError, LookupError)


def test_build_produces_requested_widths():
    model = zoo.build("jpeg-like", N=8, M=16, kernel_size=26)
    assert model.g_s.deconv.in_channels == 16 and model.g_s.deconv.kernel_size == (26, 26)
    assert model.entropy_bottleneck.channels == 16
    assert set(zoo.ARCHITECTURES) == {"jpeg-like", "two-layer", "two-layer-nores", "mbt2018-mean"}
    assert quality.LMBDAS == (0.00125, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)


def test_embedded_models_are_variable_rate_and_small():
    found = model_files.embedded_models()
    assert {"two-layer", "jpeg-like"} <= set(found)
    for arch, path in found.items():
        assert path.name == f"{arch}.safetensors" and path.stat().st_size <= 25 * 2**20
        assert model_files.model_card(path)["variable_rate"]
    assert codec.load("two-layer").quality == quality.DEFAULT_QUALITY == 3
