"""The command line (python -m shallowcodec.cli) against the embedded, trained weights.

Each subprocess costs several seconds of imports, so the calls are few and shared through
module-scoped fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from shallowcodec import cli as cli_main
from shallowcodec import codec, container, evaluation, images, quality
from shallowcodec.decoder import Decoder
from shallowcodec.images import tensor_to_image
from shallowcodec.model_files import ModelNotFoundError

PHOTO = "eval03_sail.png"
#: The embedded models' λ scale (stop 22): λ(q) = 0.00042 · 2.65^q.
EMBEDDED_SCALE = quality.LmbdaScale(0.00042, 2.65)


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shallowcodec.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"shallowcodec {command}: error:")
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def sail(photos24) -> Path:
    return photos24 / PHOTO


@pytest.fixture(scope="module")
def compressed(work, sail):
    """compress the photo with the default model and quality: (path of the .sdc, the run)."""
    out = work / "sail.sdc"
    return out, cli("compress", sail, "-o", out)


def test_compress_reports_bpp(compressed, sail):
    out, result = compressed
    assert result.returncode == 0, result.stderr
    size = out.stat().st_size
    assert "bpp" in result.stdout and f"{size} bytes" in result.stdout
    with Image.open(sail) as im:
        w, h = im.size
    assert f"{8 * size / (w * h):.4f} bpp" in result.stdout
    assert f"two-layer q{quality.DEFAULT_QUALITY}" in result.stdout


def test_info_json(compressed, sail):
    out, _ = compressed
    result = cli("info", out, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    with Image.open(sail) as im:
        w, h = im.size
    assert (w, h) == (768, 512)
    assert info["model"] == "two-layer"
    assert info["quality"] == quality.DEFAULT_QUALITY == 3
    assert (info["height"], info["width"]) == (h, w)
    assert info["bytes"] == out.stat().st_size
    assert info["bpp"] == pytest.approx(8 * out.stat().st_size / (h * w))
    assert info["header_bytes"] == container.header_size("two-layer")
    header = container.unpack(out.read_bytes()).header
    assert info["weights_id"] == f"{header.weights_id:08x}"
    assert info["lmbda"] == pytest.approx(EMBEDDED_SCALE(3), rel=1e-6)


def test_decompress_refuses_existing_output_then_force_overwrites(compressed, work, sail, capsys):
    sdc, _ = compressed
    png = work / "sail.png"
    png.write_bytes(b"precious")
    # refused (in-process, the exit status main() hands to sys.exit; a subprocess costs ~10 s here)
    assert cli_main.main(["decompress", str(sdc), "-o", str(png)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shallowcodec decompress: error:") and "--force" in err[0]
    assert png.read_bytes() == b"precious"
    before = sdc.read_bytes()
    assert cli_main.main(["compress", str(sail), "-o", str(sdc)]) == 1  # same for compress
    assert "exists" in capsys.readouterr().err
    assert sdc.read_bytes() == before

    done = cli("decompress", sdc, "-o", png, "--force")
    assert done.returncode == 0, done.stderr
    assert "768x512" in done.stdout
    decoded, notice = images.read_image(png)
    original, _ = images.read_image(sail)
    assert notice is None and decoded.shape == original.shape == (3, 512, 768)
    assert evaluation.psnr(original, decoded) > 20
    assert not [p.name for p in work.iterdir() if p.name.endswith(".tmp")]  # no temp files left


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "random"])
def test_damaged_files_give_one_line_error(compressed, work, damage):
    sdc, _ = compressed
    data = sdc.read_bytes()
    if damage == "truncated":
        bad = data[: len(data) // 2]
    elif damage == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x04
        bad = bytes(flipped)
    else:
        bad = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    src, out = work / f"{damage}.sdc", work / f"{damage}.png"
    src.write_bytes(bad)
    result = cli("decompress", src, "-o", out)
    assert_one_line_error(result, "decompress")
    assert result.stdout == ""
    assert not out.exists()
    assert not [p.name for p in work.iterdir() if p.name.startswith(f".{damage}.png")]


# The next checks run cli.main in this process (same code path, no import cost): the process-level
# behaviour (exit status, one stderr line, no traceback) is covered by the subprocess tests above.


def test_missing_input_exit_1(work, capsys):
    assert cli_main.main(["compress", str(work / "does-not-exist.png"), "-o", str(work / "never.sdc")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shallowcodec compress: error:") and "does-not-exist.png" in err[0]
    assert not (work / "never.sdc").exists()
    assert cli_main.main(["info", str(work / "does-not-exist.sdc")]) == 1
    assert capsys.readouterr().err.startswith("shallowcodec info: error:")


def test_bad_option_exit_2(work, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["compress", "--no-such-option", str(work / "x.png"), "-o", str(work / "x.sdc")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "shallowcodec: error: unrecognized arguments: --no-such-option (see --help)\n"
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["compress", str(work / "x.png"), "-o", str(work / "x.sdc"), "--model", "nope"])
    assert exit_info.value.code == 2


def test_own_weights_compress_and_decompress(work, photo_crop, codec_factory, tmp_path, capsys):
    """A trained weights file (here a tiny variable-rate one) encodes and decodes with --weights;
    the embedded decoder refuses its file, and --weights with --model is a usage error."""
    own = codec_factory("own.safetensors", variable_rate=True, quality=2)
    photo, sdc, png = work / "own.png", work / "own.sdc", work / "own-decoded.png"
    images.tensor_to_image(photo_crop(64, 96)).save(photo)
    weights = str(tmp_path / "own.safetensors")
    assert cli_main.main(["compress", str(photo), "-o", str(sdc), "--weights", weights, "--quality", "2"]) == 0
    assert "two-layer q2 (own.safetensors)" in capsys.readouterr().out  # the summary names the weights
    assert container.unpack(sdc.read_bytes()).header.weights_id == own.loaded.weights_id
    assert cli_main.main(["decompress", str(sdc), "-o", str(png), "--weights", weights]) == 0
    decoded, _ = images.read_image(png)
    assert torch.equal(decoded, own.decompress_tensor(sdc.read_bytes()))
    capsys.readouterr()
    assert cli_main.main(["decompress", str(sdc), "-o", str(work / "never.png")]) == 1
    err = capsys.readouterr().err
    assert "other two-layer weights" in err and "decompress --weights" in err and "installed" not in err
    assert not (work / "never.png").exists()
    assert cli_main.main(["compress", str(photo), "-o", str(work / "x.sdc"), "--weights", weights,
                          "--model", "jpeg-like"]) == 2  # bad usage
    assert "not both" in capsys.readouterr().err
    bad = work / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    assert cli_main.main(["decompress", str(sdc), "-o", str(work / "never.png"), "--weights", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load weights" in err[0] and "Error(" not in err[0]
    assert err[0].endswith("not a shallowcodec weights file (not safetensors)")  # not "header too large"


def test_weights_with_nan_are_refused_by_encoder_and_decoder(work, photo_crop, codec_factory, tmp_path, capsys):
    """A reported bug: NaN in g_s compressed and decoded to a garbage PNG with exit code 0."""
    from safetensors.torch import load_file, save_file  # the crafted file

    codec_factory("nan.safetensors", variable_rate=True, quality=2)
    path = tmp_path / "nan.safetensors"
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    tensors["g_s.out.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, path, metadata=meta)
    photo = work / "nan.png"
    images.tensor_to_image(photo_crop(64, 64)).save(photo)
    assert cli_main.main(["compress", str(photo), "-o", str(work / "nan.sdc"), "--weights", str(path)]) == 1
    assert "g_s.out.weight holds values that are not finite" in capsys.readouterr().err
    with pytest.raises(ModelNotFoundError, match="g_s.out.weight holds values that are not finite"):
        Decoder(path)


def test_models_json(capsys):
    assert cli_main.main(["models", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {"two-layer", "jpeg-like"} <= set(table)
    for arch, card in table.items():
        assert card["default_quality"] == 3 and card["variable_rate"]
        assert card["qualities"] == list(range(7)) and card["lmbdas"] == EMBEDDED_SCALE.lmbdas()
        assert card["core_hours"] > 3 and card["gpu_minutes"] >= 0 and card["total_steps"] > 10_000  # the budget
    assert cli_main.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "two-layer (default)" in out and "core-hours, 0 GPU-minutes" in out


def test_rgba_input_with_jpeg_like_quality_1(work, photo_crop, capsys):
    """One call covers two things (subprocesses are slow): an RGBA PNG gets a notice about its
    alpha channel and still compresses, and ``--model jpeg-like --quality 1`` works."""
    x = photo_crop(128, 192, 64, 64)
    rgba = np.concatenate([x.permute(1, 2, 0).numpy(), np.full((128, 192, 1), 128, np.uint8)], axis=2)
    src, out = work / "rgba.png", work / "rgba-jpeg.sdc"
    Image.fromarray(rgba, "RGBA").save(src)
    result = cli("compress", src, "-o", out, "--model", "jpeg-like", "--quality", "1")
    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stderr and "Traceback" not in result.stderr
    assert "jpeg-like q1" in result.stdout and "bpp" in result.stdout

    capsys.readouterr()
    assert cli_main.main(["info", str(out), "--json"]) == 0  # in-process: one subprocess less
    fields = json.loads(capsys.readouterr().out)
    assert (fields["model"], fields["quality"]) == ("jpeg-like", 1)
    assert (fields["height"], fields["width"]) == (128, 192)
    assert fields["bytes"] == os.path.getsize(out)
    assert fields["lmbda"] == pytest.approx(EMBEDDED_SCALE(1), rel=1e-6) and EMBEDDED_SCALE(1) == pytest.approx(0.001113)
    # and it decodes (in-process) to the crop's size with a sane quality
    decoded = codec.load("jpeg-like", 1).decompress_tensor(out.read_bytes())
    assert decoded.shape == (3, 128, 192)
    assert evaluation.psnr(x, decoded) > 15


def test_output_never_replaces_its_input(work):
    """Reported: `compress photo.png -o photo.png --force` overwrote the photo with .sdc bytes."""
    src = work / "same.png"
    tensor_to_image(torch.zeros(3, 4, 4, dtype=torch.uint8)).save(src)
    before = src.read_bytes()
    assert cli_main.main(["compress", str(src), "-o", str(src), "--force"]) == 1
    assert src.read_bytes() == before


def test_bad_values_are_usage_errors(work):
    for argv in (["compress", "x.png", "-o", "x.sdc", "--quality", "9"],
                 ["compress", "x.png", "-o", "x.sdc", "--sga-seconds", "0"],
                 ["compress", "x.png", "-o", "x.sdc", "--sga-steps", "-1"],
                 ["compress", "x.png", "-o", "x.sdc", "--effort", "5"],
                 ["compress", "x.png", "-o", "x.sdc", "--target-size", "5 parsecs"],
                 ["compress", "x.png", "-o", "x.sdc", "--target-bpp", "nan"],
                 ["compress", "x.png", "-o", "x.sdc", "--target-psnr", "30", "--target-bpp", "1"]):
        with pytest.raises(SystemExit) as exit_info:
            cli_main.main(argv)
        assert exit_info.value.code == 2


def test_compress_to_a_target_size_and_an_unreachable_one(work, photo_crop, capsys):
    src = work / "target.png"
    tensor_to_image(photo_crop(256, 384, 128, 192)).save(src)
    out = work / "target.sdc"
    assert cli_main.main(["compress", str(src), "-o", str(out), "--target-size", "6KB"]) == 0
    assert 0.97 * 6000 <= out.stat().st_size <= 6000
    header = container.unpack(out.read_bytes()).header
    assert f"two-layer q{header.quality:g}" in capsys.readouterr().out and header.quality != quality.DEFAULT_QUALITY
    small = work / "small.sdc"
    result = cli("compress", src, "-o", small, "--target-size", "100B")
    assert "cannot reach 100 bytes: the nearest is" in assert_one_line_error(result, "compress")
    assert not small.exists()
    assert cli_main.main(["compress", str(src), "-o", str(small), "--target-size", "6KB", "--quality", "2"]) == 2


def test_eval_at_target_bpps_records_the_targets(work, photos24, capsys):
    out = work / "targets.json"
    cli_main.main(["eval", str(photos24 / PHOTO), "--target-bpp", "0.5", "0.25", "--json", str(out)])
    points = json.loads(out.read_text())["points"]
    assert [p["target"] for p in points] == [{"kind": "bpp", "value": 0.25}, {"kind": "bpp", "value": 0.5}]
    assert all(0.97 * p["target"]["value"] <= p["mean"]["bpp"] <= p["target"]["value"] for p in points)
    assert "target 0.25 bpp: mean over 1 image: 0.24" in capsys.readouterr().out
