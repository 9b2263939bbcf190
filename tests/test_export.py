"""ONNX export (export.py, ``shallowcodec export --onnx``): a real file decoded through the exported graphs and tables."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import shallowcodec
from shallowcodec import cli, container, decoder, entropy_coding, export
from shallowcodec.entropy_parameters import hyper_synthesis_exact
from shallowcodec.model_files import embedded_models, embedded_path

MODEL = "jpeg-like"
QUALITY = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The folder of ``shallowcodec export --onnx DIR --model jpeg-like``."""
    folder = tmp_path_factory.mktemp("onnx") / "decoders"
    assert cli.main(["export", "--onnx", str(folder), "--model", MODEL]) == 0
    return folder


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_graphs_and_tables_decode_a_real_file(exported, photo_crop):
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md", f"{MODEL}.g_s.onnx", f"{MODEL}.h_s.onnx", f"{MODEL}.tables.npz"]
    data = shallowcodec.load(MODEL, QUALITY).compress(photo_crop(200, 328, 100, 200))
    stream, lean = container.unpack(data), decoder.Decoder(embedded_path(MODEL))
    height, width = stream.header.height, stream.header.width
    t = dict(np.load(exported / f"{MODEL}.tables.npz"))
    assert str(t["architecture"]) == MODEL and int(t["weights_id"]) == stream.header.weights_id == lean.weights_id
    per_channel = {k: t[k][QUALITY].reshape(1, -1, 1, 1) for k in t if k.startswith("exact_")}
    gains = lean.gains(QUALITY)
    assert np.array_equal(per_channel["exact_y_gain_inv"], gains.y_inv)

    # z: ANS with the exported tables, then the ONNX h_s: bit-exact against the numpy h_s
    m = lean.channels
    z_grid = (1, m, -(-height // 64), -(-width // 64))
    z_tables = entropy_coding.CdfTables(t["z_quantized_cdf"], t["z_cdf_length"], t["z_offset"])
    channels = np.broadcast_to(np.arange(m, dtype=np.int32).reshape(1, -1, 1, 1), z_grid)
    z_g = entropy_coding.decode(stream.z_string, channels, z_tables).astype(np.float32) + t["z_medians"].reshape(1, -1, 1, 1)
    z = z_g.astype(np.float64) * per_channel["exact_z_gain_inv"]
    mu, log_sigma = session(exported / f"{MODEL}.h_s.onnx").run(None, {"z_hat": z})
    exact_mu, exact_log_sigma = hyper_synthesis_exact(lean.h_s, z)
    assert mu.dtype == np.float64 and mu.shape == (1, m, 4 * z_grid[2], 4 * z_grid[3])
    assert np.array_equal(mu, exact_mu) and np.array_equal(log_sigma, exact_log_sigma)  # tolerance 0

    # y: scale indexes from the exported thresholds and gains; ŷ equals the package decoder's
    indexes = np.searchsorted(t["log_scale_thresholds"], log_sigma + per_channel["exact_log_y_gain"], side="left")
    y_tables = entropy_coding.CdfTables(t["y_quantized_cdf"], t["y_cdf_length"], t["y_offset"])
    y_g = mu * per_channel["exact_y_gain"] + entropy_coding.decode(stream.y_string, indexes.astype(np.uint8), y_tables)
    assert np.array_equal(y_g, lean.decode_latents(stream))

    # g_s: float32, against the numpy g_s and the decoded pixels
    y = (y_g * per_channel["exact_y_gain_inv"]).astype(np.float32)
    (x_hat,) = session(exported / f"{MODEL}.g_s.onnx").run(None, {"y_hat": y})
    assert x_hat.shape == (1, 3, 16 * y.shape[2], 16 * y.shape[3])
    assert np.abs(255 * x_hat[0].transpose(1, 2, 0) - lean.g_s(y[0])).max() < 3e-3  # measured 2.3e-4 (jpeg-like q3)
    pixels = np.rint(np.clip(x_hat[0, :, :height, :width], 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    assert np.abs(pixels.astype(int) - decoder.decompress_array(data).astype(int)).max() <= 1


def test_graphs_carry_their_model_and_doc(exported):
    model = onnx.load(exported / f"{MODEL}.h_s.onnx")
    props = {p.key: p.value for p in model.metadata_props}
    assert props["architecture"] == MODEL and props["weights_id"] == f"{decoder.embedded_decoder(MODEL).weights_id:08x}"
    assert "float32" in model.doc_string and "Exact in float64" in model.doc_string
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][2:] == ["h/4", "w/4"]
    assert "γ⁻¹" in (exported / "README.md").read_text(encoding="utf-8")


def test_outputs_are_refused_with_one_line_errors(exported, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    before = {p.name: p.stat().st_mtime_ns for p in exported.iterdir()}
    for folder, message in ((blocker, f"{blocker} exists and is not a folder"),
                            (exported, f"{exported / (MODEL + '.g_s.onnx')} exists (use --force to overwrite)")):
        assert cli.main(["export", "--onnx", str(folder), "--model", MODEL]) == 1
        assert capsys.readouterr().err == f"shallowcodec export: error: {message}\n"
    assert {p.name: p.stat().st_mtime_ns for p in exported.iterdir()} == before
    with pytest.raises(SystemExit) as usage:
        cli.main(["export", "--onnx", str(tmp_path / "d"), "--model", "no-such-model"])
    assert usage.value.code == 2 and not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", sorted(embedded_models()))
def test_every_embedded_models_graphs_compute_its_numpy_decoder(name):
    """The graphs are the numpy decoder's layers written out: h_s bit for bit, g_s to float32 rounding."""
    files = export.model_export(name)
    lean = decoder.embedded_decoder(name)
    rng = np.random.default_rng(0)
    z = rng.integers(-3, 4, (1, lean.channels, 2, 3)) * rng.uniform(0.5, 2, (1, lean.channels, 1, 1))
    mu, log_sigma = ort.InferenceSession(files[f"{name}.h_s.onnx"], providers=["CPUExecutionProvider"]).run(
        None, {"z_hat": z})
    exact_mu, exact_log_sigma = hyper_synthesis_exact(lean.h_s, z)
    assert np.array_equal(mu, exact_mu) and np.array_equal(log_sigma, exact_log_sigma) and np.abs(mu).max() > 0
    y = rng.standard_normal((1, lean.channels, 4, 8)).astype(np.float32)
    (x_hat,) = ort.InferenceSession(files[f"{name}.g_s.onnx"], providers=["CPUExecutionProvider"]).run(None, {"y_hat": y})
    assert x_hat.shape == (1, 3, 64, 128)
    np.testing.assert_allclose(255 * x_hat[0].transpose(1, 2, 0), lean.g_s(y[0]), rtol=1e-4, atol=3e-3)
