"""The paper's analyses (shallowcodec.analyses): the numbers that can be pinned on tiny models and crops."""

import json

import numpy as np
import pytest
import torch

from shallowcodec import complexity
from shallowcodec.analyses import filters, flatness, kernels, sga_curve, tradeoff
from shallowcodec.container import unpack
from shallowcodec.images import read_image, tensor_to_image
from shallowcodec.transforms import JPEGLikeSynthesis
from shallowcodec.zoo import build


@pytest.fixture
def crop_files(photo_crop, tmp_path):
    """Two 64×64 photo crops as PNG files."""
    paths = []
    for i, (top, left) in enumerate([(100, 200), (300, 500)]):
        path = tmp_path / f"crop{i}.png"
        tensor_to_image(photo_crop(64, 64, top, left)).save(path)
        paths.append(path)
    return paths


def test_linear_decoder_path_is_straight():
    torch.manual_seed(0)
    y0, y1 = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    d, straight = flatness.path_distances(build("jpeg-like", N=8, M=16).g_s, y0, y1, steps=32)
    assert d.shape == (32,)
    assert d.sum() / straight == pytest.approx(1.0, abs=1e-12)  # a linear g_s decodes the straight path straight
    assert np.allclose(d, straight / 32, rtol=1e-10)
    curved, straight = flatness.path_distances(build("mbt2018-mean", N=8, M=16).g_s, 3 * y0, 3 * y1, steps=32)
    assert curved.sum() / straight > 1 + 1e-6  # IGDN bends the path (triangle inequality: never below 1)


def test_flatness_of_real_files(codec_factory, photo_crop):
    codec = codec_factory("j.safetensors", architecture="jpeg-like")
    crops = [photo_crop(64, 64, 100, 200), photo_crop(64, 64, 300, 500)]
    y = flatness.coded_latents(codec, crops[0])
    assert y.shape == (1, 16, 4, 4) and y.dtype == torch.float32
    assert torch.equal(y, codec.decode_latents(unpack(codec.compress(crops[0]))).float())  # fixed-λ: no gain
    result = flatness.flatness(codec, crops, ["a", "b"], steps=8)
    assert len(result["pairs"]) == 1 and result["pairs"][0]["straight"] > 1
    assert result["mean_ratio"] == pytest.approx(1.0, abs=1e-9)


def test_filter_grid_shape_and_scaling():
    bank = np.random.default_rng(0).normal(size=(20, 3, 18, 18))
    grid = filters.filter_grid(bank, columns=8, gap=1)
    assert grid.shape == (3 * 19 + 1, 8 * 19 + 1, 3)  # ⌈20 / 8⌉ = 3 rows
    assert grid.min() >= 0 and grid.max() <= 1
    first = bank[0].transpose(1, 2, 0)
    assert np.allclose(grid[1:19, 1:19], 0.5 + 0.5 * first / np.abs(first).max())
    assert np.all(grid[-19:, -19 * 4 :] == 1)  # the 4 empty cells of the last row stay white


def test_jpeg_like_filters_are_its_kernels():
    torch.manual_seed(0)
    model = build("jpeg-like", N=8, M=16, variable_rate=True).eval()
    bank = filters.synthesis_filters(model, quality=5)
    step = model.ungain(torch.ones(1, 16, 1, 1, dtype=torch.float64), 5).double().reshape(-1, 1, 1, 1)
    assert bank.shape == (16, 3, 18, 18)
    assert torch.allclose(bank, step * model.g_s.deconv.weight.double(), atol=1e-12)


def test_two_layer_filters_cover_both_layers():
    torch.manual_seed(0)
    bank = filters.synthesis_filters(build("two-layer", N=8, M=16).eval(), quality=None)
    assert bank.shape[:2] == (16, 3)
    assert 16 < bank.shape[-1] <= 30  # ConvT k13 s8 then k5 s2: (13 − 1)·2 + 5 = 29 pixels at most
    assert bank.abs().amax(dim=(1, 2, 3)).min() > 0


def test_channel_bits_estimate_the_file(codec_factory, crop_files):
    codec = codec_factory("t.safetensors")
    bits = filters.channel_bits(codec, crop_files)
    assert bits.shape == (16,) and np.all(bits > 0)
    file_bits = sum(8 * len(unpack(codec.compress(read_image(p)[0])).y_string) for p in crop_files)
    assert bits.sum() == pytest.approx(file_bits, rel=0.2)  # the coder adds ~12 bytes per string, a lot here


def test_sga_cost_falls_with_steps(codec_factory, photo_crop):
    codec = codec_factory("t.safetensors")
    crops = [photo_crop(64, 64, 224, 352), photo_crop(64, 64, 0, 0)]
    rows = sga_curve.sga_curve(codec, crops, [0, 30, 100, 300])
    costs = [r["cost"] for r in rows]
    assert all(b <= a for a, b in zip(costs, costs[1:])), costs
    assert rows[-1]["gap"] > 0.5 and rows[-1]["gap"] == pytest.approx(costs[0] - costs[-1])
    assert rows[0]["bpp"] == pytest.approx(np.mean([r["bpp"] for r in rows[0]["images"]]))


def _result(label, model, codec, points):
    return {"label": label, "model": model, "codec": codec, "images": "photos24",
            "points": [{"mean": {"bpp": b, "psnr": p, "decode_s": 0.5}} for b, p in points]}


def test_tradeoff_rows():
    anchor = _result("mbt2018-mean", "mbt2018-mean", "shallowcodec", [(0.2, 27.0), (0.5, 31.0), (1.0, 33.5)])
    cheaper = _result("webp", None, "webp", [(0.1, 27.0), (0.25, 31.0), (0.5, 33.5)])
    bench = {"image": "x.png", "threads": {"1": [{"name": "webp q50", "decode_s": 0.007}]}}
    row = tradeoff.tradeoff_row(cheaper, anchor, bench, "1")
    assert row["bd_rate_percent"] == pytest.approx(-50.0)  # half the bits at every PSNR
    assert row["flops_per_pixel"] is None and row["decode_ms"] == pytest.approx(7.0)
    own = tradeoff.tradeoff_row(anchor, anchor, bench, "1")
    assert own["bd_rate_percent"] == pytest.approx(0.0, abs=1e-9)
    assert own["decode_ms"] == pytest.approx(500.0) and own["decode_ms_source"].startswith("eval")  # no bench row
    flops = {m: tradeoff.decode_flops(m)["decode"] for m in ("jpeg-like", "two-layer", "mbt2018-mean")}
    assert flops["jpeg-like"] < flops["two-layer"] < flops["mbt2018-mean"]


def test_kernel_start_pads_and_crops(codec_factory):
    start = codec_factory("j.safetensors", architecture="jpeg-like").loaded
    y = torch.randn(1, 16, 3, 3)
    wide, config = kernels.kernel_start(start, 26)
    assert config["kernel_size"] == 26 and wide.g_s.deconv.weight.shape[-1] == 26
    with torch.no_grad():
        assert torch.allclose(wide.g_s(y), start.model.g_s(y), atol=1e-5)  # zero taps: the same g_s
    block, _ = kernels.kernel_start(start, 16)
    assert torch.equal(block.g_s.deconv.weight, start.model.g_s.deconv.weight[..., 1:-1, 1:-1])
    assert torch.equal(block.g_a[0].weight, start.model.g_a[0].weight)
    with pytest.raises(ValueError, match="even"):
        kernels.adapt_kernel(start.model.g_s.deconv.weight, 17)


def test_kernel_flops_match_the_paper():
    y = torch.empty(1, 320, 16, 16, device="meta")
    per_pixel = {k: complexity.count_flops(JPEGLikeSynthesis(320, k).to("meta"), y) / 256**2 for k in (16, 18)}
    assert per_pixel[18] == pytest.approx(2433, abs=1)  # paper Table 1, k = 18
    assert per_pixel[16] < per_pixel[18]


def test_blockiness():
    levels = torch.randint(0, 256, (3, 4, 4), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    blocks = levels.repeat_interleave(16, 1).repeat_interleave(16, 2)
    assert kernels.blockiness(blocks.float() + torch.rand(3, 64, 64)) > 50
    ramp = torch.arange(64.0).expand(3, 64, 64)
    assert kernels.blockiness(ramp) == pytest.approx(1.0)
    flat = torch.full((3, 64, 32), 128, dtype=torch.uint8)
    assert kernels.flattest_window(torch.cat([blocks, flat], 2), 32) == (0, 64)


def test_cli_flatness_writes_png_and_json(codec_factory, crop_files, tmp_path, capsys):
    from shallowcodec import cli
    weights = tmp_path / "j.safetensors"
    codec_factory(weights.name, architecture="jpeg-like")
    stem = tmp_path / "flat"
    argv = ["analyze", "flatness", "--weights", str(weights), "--images", *map(str, crop_files), "--crop", "64",
            "--steps", "4", "-o", str(stem)]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "flat.json").read_text())
    assert report["models"][0]["mean_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert (tmp_path / "flat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(argv) == 1  # outputs exist: one line, exit 1
    assert capsys.readouterr().err.strip().endswith("exists (use --force to overwrite)")


def test_cli_kernels_trains_each_size_through_the_trainer_api(codec_factory, crop_files, tmp_path, capsys,
                                                             monkeypatch):
    from shallowcodec import cli
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the trainer's image cache: not the real ~/.cache
    weights = tmp_path / "j.safetensors"
    codec_factory(weights.name, architecture="jpeg-like", variable_rate=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in crop_files:
        (photos / path.name).write_bytes(path.read_bytes())
    stem, work = tmp_path / "kern", tmp_path / "work"
    argv = ["analyze", "kernels", "--weights", str(weights), "--images", *map(str, crop_files), "--kernels", "16", "18",
            "--qualities", "1", "3", "--data", str(photos), "--work", str(work), "--train-steps", "1",
            "--train-crop", "64", "--batch-size", "1", "--window", "32", "-o", str(stem)]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "kern.json").read_text())
    assert [r["kernel_size"] for r in report["rows"]] == [16, 18] and report["reference_kernel"] == 18
    assert [r["train_steps"] for r in report["rows"]] == [1, 1]
    assert report["rows"][1]["bd_rate_vs_reference_percent"] == pytest.approx(0.0, abs=1e-9)
    assert report["budget"] == {"steps": 1, "crop": 64, "batch_size": 1, "lr": 1e-4, "quantizer": "mixed",
                                "threads": 1, "data": str(photos)}
    assert sorted(p.name for p in work.glob("*.safetensors")) == ["init-k16.safetensors", "init-k18.safetensors",
                                                                  "k16.safetensors", "k18.safetensors"]
    assert (tmp_path / "kern.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.count("k=1") == 2


def test_cli_tradeoff_reads_results_and_bench(tmp_path, capsys):
    from shallowcodec import cli
    from shallowcodec.evaluation import SCHEMA

    files = {}
    for name, model, codec, points in (("mbt2018-mean", "mbt2018-mean", "shallowcodec", [(0.2, 27.0), (0.5, 31.0),
                                                                                        (1.0, 33.5)]),
                                       ("webp", None, "webp", [(0.1, 27.0), (0.25, 31.0), (0.5, 33.5)])):
        result = {"schema": SCHEMA, **_result(name, model, codec, points), "n_images": 1}
        for point, q in zip(result["points"], (1, 2, 3)):
            point.update(quality=q, lmbda=None, images=[{"image": "a.png"}])
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(result))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"image": "x.png", "threads": {"1": [{"name": "webp q50", "decode_s": 0.007}]}}))
    argv = ["analyze", "tradeoff", str(files["webp"]), "--anchor", str(files["mbt2018-mean"]), "--bench", str(bench),
            "-o", str(tmp_path / "t")]
    assert cli.main(argv) == 0
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["bd_rate_percent"] == pytest.approx(-50.0) and rows[0]["decode_ms"] == 7.0
    assert "webp: BD-rate -50.0 % vs mbt2018-mean" in capsys.readouterr().out
