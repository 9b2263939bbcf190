"""`shallowcodec eval | compare | plot | flops | bench`: result files, exit codes, outputs."""

from __future__ import annotations

import json
import math

import pytest

from shallowcodec import bench, cli, codec
from shallowcodec.cli import paths
from shallowcodec.evaluation import SCHEMA, load_result
from shallowcodec.images import tensor_to_image


@pytest.fixture
def folder(photo_crop, tmp_path):
    """Two 176×192 photo crops as PNG files (MS-SSIM needs 161 px a side)."""
    d = tmp_path / "crops"
    d.mkdir()
    for i, (top, left) in enumerate([(0, 0), (300, 500)]):
        tensor_to_image(photo_crop(176, 192, top=top, left=left)).save(d / f"c{i}.png")
    return d


@pytest.fixture
def tiny_models(codec_factory, monkeypatch):
    """`load(name, quality)` in the cli's commands and bench returns tiny seeded codecs (qualities 1 and 3)."""
    made = {q: codec_factory(f"q{q}.safetensors", quality=q, lmbda=0.00125 * 2**q, seed=q) for q in (1, 3)}

    def load(name, quality=None):
        return made[3 if quality is None else quality]

    monkeypatch.setattr(codec, "load", load)  # cli imports it when a command runs
    monkeypatch.setattr(bench, "load", load)
    return made


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_model_sweep_writes_the_documented_schema(folder, tiny_models, tmp_path, capsys):
    out = tmp_path / "two-layer.json"
    code, stdout, _ = run(["eval", folder, "--qualities", 3, 1, "--json", out], capsys)
    assert code == 0
    result = load_result(out)
    assert result["schema"] == SCHEMA and result["codec"] == "shallowcodec" and result["model"] == "two-layer"
    assert result["images"] == "crops" and result["n_images"] == 2
    assert [p["quality"] for p in result["points"]] == [1, 3]
    assert [p["lmbda"] for p in result["points"]] == [0.0025, 0.01]
    for point in result["points"]:
        rows = point["images"]
        assert [r["image"] for r in rows] == ["c0.png", "c1.png"]
        for r in rows:
            assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (176 * 192))
            assert 0 < r["ms_ssim"] < 1 and r["encode_s"] > 0 and r["decode_s"] > 0
        assert point["mean"]["psnr"] == pytest.approx(sum(r["psnr"] for r in rows) / 2)
    assert stdout.count("mean over 2 images") == 2


def test_eval_classical_codec_same_schema(folder, tmp_path, capsys):
    out = tmp_path / "jpeg.json"
    code, _, _ = run(["eval", folder, "--codec", "jpeg420", "--qualities", 20, 80, "--json", out], capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert (result["codec"], result["model"], result["label"]) == ("jpeg420", None, "jpeg420")
    low, high = result["points"]
    assert low["lmbda"] is None and low["mean"]["bpp"] < high["mean"]["bpp"] and low["mean"]["psnr"] < high["mean"]["psnr"]
    assert result["software"]["libjpeg_turbo"]


def test_eval_refuses_existing_json_and_conflicting_options(folder, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("{}")
    code, _, err = run(["eval", folder, "--codec", "webp", "--json", out], capsys)
    assert code == 1 and err.count("\n") == 1 and "--force" in err and out.read_text() == "{}"
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", str(folder), "--model", "two-layer", "--codec", "webp"])
    assert e.value.code == 2
    code, _, err = run(["eval", folder, "--codec", "webp", "--quality", 120], capsys)
    assert code == 2 and "webp qualities are integers 0–100, got 120" in err  # bad usage, as in compress
    for bad in ("inf", "nan"):
        code, _, err = run(["eval", folder, "--codec", "webp", "--quality", bad], capsys)
        assert code == 2 and f"got {bad}" in err
    code, _, err = run(["eval", folder, "--model", "two-layer", "--qualities", 0, 7], capsys)
    assert code == 2 and "model qualities are 0–6, got 0 7" in err and err.count("\n") == 1


def synthetic_result(path, label, bpp, psnr, ms_ssim, images=()):
    rows = [{"image": name} for name in images]
    points = [{"quality": i, "lmbda": None, "images": rows, "mean": {"bpp": b, "psnr": p, "ms_ssim": m}}
              for i, (b, p, m) in enumerate(zip(bpp, psnr, ms_ssim))]
    path.write_text(json.dumps({"schema": SCHEMA, "codec": "x", "model": None, "label": label,
                                "images": "photos24", "n_images": 24, "points": points}))
    return path


@pytest.fixture
def curves(tmp_path):
    bpp = [0.12, 0.2, 0.3, 0.46, 0.67, 0.94]
    psnr = [27.3, 28.8, 30.6, 32.6, 34.6, 36.6]
    ms_ssim = [0.897, 0.928, 0.952, 0.969, 0.981, 0.988]
    a = synthetic_result(tmp_path / "a.json", "A", bpp, psnr, ms_ssim)
    b = synthetic_result(tmp_path / "b.json", "B", [0.9 * r for r in bpp], psnr, ms_ssim)
    return a, b


def test_compare_reports_known_bd_rate(curves, capsys):
    code, out, _ = run(["compare", *curves, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and (report["a"], report["b"]) == ("A", "B")
    assert report["psnr"]["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-9)
    assert report["ms_ssim_db"]["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-9)
    assert report["psnr"]["bd_db"] > 0
    code, out, _ = run(["compare", *curves], capsys)
    assert "BD-rate -10.00 %" in out


def test_compare_rejects_foreign_file(curves, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text('{"results": {}}')
    code, _, err = run(["compare", curves[0], other], capsys)
    assert code == 1 and err.count("\n") == 1 and "not a shallowcodec result file" in err


def test_compare_refuses_results_of_other_images(tmp_path, capsys):
    """A reported bug: one photo's eval was compared with the 24-photo JPEG anchor and labelled photos24."""
    curve = [0.1, 0.2, 0.4, 0.8], [27.0, 29.0, 31.0, 33.0], [0.9, 0.93, 0.95, 0.97]
    all24 = [f"eval{i:02d}.png" for i in range(1, 25)]
    a = synthetic_result(tmp_path / "a.json", "A", *curve, images=all24)
    b = synthetic_result(tmp_path / "b.json", "B", *curve, images=all24[3:4])
    code, out, err = run(["compare", a, b], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "A covers 24 images and B 1, not the same" in err
    assert run(["compare", a, synthetic_result(tmp_path / "c.json", "C", *curve, images=all24[::-1])], capsys)[0] == 0


def test_eval_of_one_image_is_labelled_with_its_name(photos24, tmp_path, capsys):
    out = tmp_path / "one.json"
    argv = ["eval", photos24 / "eval04_tulips.png", "--codec", "jpeg420", "--quality", 50, "--json", out]
    assert run(argv, capsys)[0] == 0
    result = json.loads(out.read_text())
    assert (result["images"], result["n_images"]) == ("eval04_tulips", 1)


def test_plot_writes_png_and_needs_force(curves, tmp_path, capsys):
    png = tmp_path / "rd.png"
    assert run(["plot", *curves, "-o", png], capsys)[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(["plot", *curves, "-o", png], capsys)
    assert code == 1 and "--force" in err


def test_plot_overlays_published_anchors(curves, tmp_path, capsys):
    if not paths.anchors().is_dir():
        pytest.skip("shared/anchors not found")
    code, out, _ = run(["plot", *curves, "-o", tmp_path / "rd.png", "--anchors"], capsys)
    assert code == 0 and "9 curves" in out
    code, out, _ = run(["plot", *curves, "-o", tmp_path / "rd2.png", "--anchors", "jpeg", "vtm"], capsys)
    assert code == 0 and "4 curves" in out
    code, _, err = run(["plot", *curves, "-o", tmp_path / "rd3.png", "--anchors", "nope"], capsys)
    assert code == 1 and "unknown anchor 'nope'" in err


def test_plot_missing_anchors_dir_is_a_clear_error(curves, tmp_path, capsys):
    code, _, err = run(["plot", *curves, "-o", tmp_path / "rd.png", "--anchors", "--anchors-dir", tmp_path / "x"], capsys)
    assert code == 1 and "published anchors not found" in err and not (tmp_path / "rd.png").exists()


def test_flops_json_at_paper_size(capsys):
    code, out, _ = run(["flops", "--model", "jpeg-like", "--paper-size", "--json"], capsys)
    (row,) = json.loads(out)["models"]
    assert code == 0 and row["config"]["M"] == 320
    assert {k: round(row[k]) for k in ("g_a", "h_a", "g_s", "h_s")} == {
        "g_a": 510846, "h_a": 13452, "g_s": 2433, "h_s": 30355}


def test_bench_reports_every_entry_with_a_split_decode(folder, tiny_models, capsys):
    code, out, _ = run(["bench", "--image", folder / "c0.png", "--runs", 1, "--threads", 1, "--json"], capsys)
    report = json.loads(out)
    rows = report["threads"]["1"]
    assert code == 0 and (report["height"], report["width"]) == (176, 192)
    assert [r["name"].split()[0] for r in rows] == ["two-layer", "jpeg-like", "mbt2018-mean",
                                                 "jpeg420", "webp", "avif", "jxl"]
    assert rows[0]["decode_vs_two_layer"] == 1 and rows[1]["decode_vs_jpeg_like"] == 1
    for r in rows[:3]:
        assert r["entropy_s"] + r["h_s_s"] + r["g_s_s"] == pytest.approx(r["decode_s"])
        assert r["h_s_s"] > 0 and r["g_s_s"] > 0
    assert all(math.isfinite(r["decode_s"]) and r["bpp"] > 0 for r in rows)


def test_bench_paper_size_decodes_one_file_with_three_synthesis_transforms(folder, capsys):
    code, out, _ = run(["bench", "--paper-size", "--image", folder / "c0.png", "--runs", 1, "--threads", 1, "--json"],
                       capsys)
    report = json.loads(out)
    rows = report["threads"]["1"]
    assert code == 0 and report["paper_size"]
    assert [r["name"] for r in rows[:3]] == [f"{n} (N=192, M=320, untrained)"
                                            for n in ("two-layer", "jpeg-like", "mbt2018-mean")]
    assert rows[0]["bytes"] == rows[1]["bytes"] == rows[2]["bytes"]  # the two-layer's file, equal entropy work
    # mbt2018-mean's g_s has 17.6× the two-layer's FLOPs at these widths; time must show it
    assert rows[2]["g_s_s"] > 3 * rows[0]["g_s_s"]


def test_compare_over_a_bpp_range(tmp_path, capsys):
    """--bpp-range compares the parts of the curves between two rates (bdrate.truncate)."""
    from shallowcodec import cli

    def result(scale: float) -> dict:
        points = [{"quality": q, "lmbda": None, "mean": {"bpp": scale * b, "psnr": p},
                   "images": [{"image": "a.png"}]} for q, (b, p) in enumerate([(0.1, 26), (0.3, 30), (0.7, 34), (1.5, 37)])]
        return {"schema": "shallowcodec-rd/1", "label": f"x{scale}", "images": "set", "points": points}

    for name, scale in (("a.json", 1.0), ("b.json", 0.8)):
        (tmp_path / name).write_text(json.dumps(result(scale)))
    assert cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--bpp-range", "0.5", "100",
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bpp_range"] == [0.5, 100] and report["psnr"]["bd_rate_percent"] == pytest.approx(-20, abs=1)
    assert cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--bpp-range", "1", "0.5"]) == 2
