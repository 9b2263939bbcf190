"""Installs: the base package is the decoder; a command that needs an extra says which one, in one line; the
decoder-only check that CI runs (tests/decode_golden.py) passes here too."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shallowcodec.cli import app

HERE = Path(__file__).resolve().parent


def without(module: str, *argv: str) -> subprocess.CompletedProcess:
    """``shallowcodec ARGV`` in a fresh process where importing ``module`` fails as if it were not installed."""
    code = (f"import sys; sys.modules[{module!r}] = None; from shallowcodec import cli; "
            f"sys.exit(cli.main({list(argv)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_compress_without_torch_names_the_extra(tmp_path, photo_crop):
    from shallowcodec.images import tensor_to_image

    tensor_to_image(photo_crop(16, 16)).save(tmp_path / "a.png")
    done = without("torch", "compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.sdc"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == ["shallowcodec compress: error: this command needs the 'torch' extra: "
                                        "pip install 'shallowcodec[torch]' (torch is not installed)"]
    assert not (tmp_path / "a.sdc").exists()


def test_help_of_a_training_command_without_torch_is_one_line():
    done = without("torch", "train", "--help")
    assert done.returncode == 1
    assert done.stderr.strip().endswith("pip install 'shallowcodec[torch]' (torch is not installed)")
    assert len(done.stderr.splitlines()) == 1


def test_plot_without_matplotlib_names_the_analysis_extra(tmp_path):
    done = without("matplotlib", "plot", "-o", str(tmp_path / "rd.png"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["shallowcodec plot: error: this command needs the 'analysis' extra: "
                                        "pip install 'shallowcodec[analysis]' (matplotlib is not installed)"]


def test_decoding_needs_no_extra(tmp_path):
    golden = HERE / "data" / "golden" / "jpeg-like-1-q0.sdc"
    done = without("torch", "decompress", str(golden), "-o", str(tmp_path / "x.png"))
    assert done.returncode == 0 and done.stdout.strip() == f"{tmp_path / 'x.png'}: 80x64"


def test_the_base_package_is_the_decoder_and_every_extra_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0].split("<")[0] for d in project["dependencies"]] == [
        "numpy", "pillow", "constriction", "safetensors"]
    extras = project["optional-dependencies"]
    assert set(app.EXTRAS.values()) | {"all", "test"} == set(extras)
    assert "torch==2.14.1" in extras["torch"] and "torchvision==0.29.1" in extras["torch"]
    assert extras["all"] == ["shallowcodec[torch,analysis,onnx]"] and "shallowcodec[all]" in extras["test"]


def test_the_golden_check_of_ci_passes_and_detects_torch(photos24):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, str(HERE / "decode_golden.py"), "--photos", str(photos24)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "18 golden files decoded without errors"
    spec = importlib.util.spec_from_file_location("decode_golden", HERE / "decode_golden.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(AssertionError, match="torch is installed"):
        script.check_without_torch(HERE / "data" / "golden" / "jpeg-like-1-q0.sdc", Path("."))
