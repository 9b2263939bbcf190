"""Options are defined once: the parsers take their defaults from the dataclasses the code reads, a training
job can be configured without a command line, and the default data paths are resolved by the CLI alone."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from shallowcodec.analyses.kernels import Budget
from shallowcodec.cli import build_parser, paths
from shallowcodec.config import TrainArgumentError, TrainConfig, checked_config, field_defaults
from shallowcodec.distill import DistillConfig
from shallowcodec.quality import LMBDAS

REPO = Path(__file__).resolve().parents[1]


def test_train_options_default_to_the_train_config_fields(tmp_path):
    args = build_parser("train").parse_args(["train", "--model", "jpeg-like", "--quality", "2", "--data", str(tmp_path),
                                             "--steps", "5", "--out", str(tmp_path / "w.safetensors")])
    defaults = field_defaults(TrainConfig)
    assert {name: getattr(args, name) for name in defaults if name not in ("quality",)} == \
        {name: value for name, value in defaults.items() if name != "quality"}
    assert defaults["crop"] == 256 and defaults["lr"] == 1e-4 and defaults["quantizer"] == "noise"


def test_distill_options_default_to_the_distill_config_fields(tmp_path):
    args = build_parser("distill").parse_args(["distill", "--weights", "w", "--out", "o", "--data", str(tmp_path)])
    assert DistillConfig(**{f.name: getattr(args, f.name) for f in fields(DistillConfig)}) == \
        DistillConfig(Path("w"), Path("o"), tmp_path)
    assert args.steps == 3000 and args.batch_size == 32 and args.lr == 1e-3


def test_kernels_budget_options_default_to_the_budget_and_the_trainer():
    args = build_parser("analyze").parse_args(["analyze", "kernels"])
    assert (args.train_steps, args.train_crop, args.batch_size, args.lr, args.quantizer) == (300, 128, 8, 1e-4, "mixed")
    assert Budget(Path("d")).batch_size == TrainConfig.batch_size and Budget(Path("d")).lr == TrainConfig.lr


def test_checked_config_without_a_command_line(tmp_path):
    cfg = checked_config(model="two-layer", data=[tmp_path], steps=10, out=tmp_path.parent / "w.safetensors", quality=3)
    assert cfg.lmbda == LMBDAS[3] and cfg.data == (tmp_path,) and cfg.crop == 256
    with pytest.raises(TrainArgumentError, match="give one of --quality"):
        checked_config(model="two-layer", data=[tmp_path], steps=10, out=tmp_path.parent / "v.safetensors")
    (tmp_path.parent / "w.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"exists \(use --force to overwrite\)"):
        checked_config(model="two-layer", data=[tmp_path], steps=10, out=tmp_path.parent / "w.safetensors", quality=3)


def test_default_data_paths_are_beside_the_checkout():
    assert paths.checkout() == REPO
    assert paths.photos24() == REPO.parent / "shared" / "data" / "photos24"
    assert paths.results() == REPO / "benchmarks" / "results"
    assert build_parser("plot").parse_args(["plot", "-o", "x.png"]).anchors_dir == REPO.parent / "shared" / "anchors"
