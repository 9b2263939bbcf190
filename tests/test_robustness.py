"""Issue 12, items 2–3: padded-pixel limit, out-of-memory, notices, λ validation, ``-`` for stdin/stdout.

Most cases run the CLI in-process (``cli.main``) on tiny images; one subprocess checks a real pipe.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import shallowcodec
from shallowcodec import cli, codec, container, decoder, images

#: Offset of the float32 λ field in a two-layer file: magic, version, n, name, quality.
LMBDA_AT = 4 + 1 + 1 + len("two-layer") + 2


def run_cli(capsys, *args) -> tuple[int, str]:
    """``shallowcodec *args`` in-process: (exit code, stderr)."""
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str, command: str) -> str:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"shallowcodec {command}: error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def small_file() -> bytes:
    """A two-layer q3 file of a 32×48 gradient (embedded weights)."""
    x = torch.arange(32 * 48 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, 32, 48)
    return shallowcodec.load("two-layer", 3).compress(x)


def with_lmbda(data: bytes, lmbda: float) -> bytes:
    """``data`` with its λ field replaced and the CRC recomputed."""
    body = data[:LMBDA_AT] + struct.pack("<f", lmbda) + data[LMBDA_AT + 4 : -4]
    return body + struct.pack("<I", zlib.crc32(body))


# --- the pixel limit counts padded pixels ------------------------------------------------------

@pytest.mark.parametrize("height, width", [(1, 67_108_864), (4_194_304, 1), (1, 1_048_577)])
def test_thin_images_over_the_padded_limit_are_refused_without_allocating(height, width):
    x = torch.zeros(3, 1, 1, dtype=torch.uint8).expand(3, height, width)  # no memory behind it
    with pytest.raises(images.ImageError, match="once padded"):
        shallowcodec.load("two-layer", 3).compress(x)


def test_the_largest_padded_size_is_accepted():
    assert container.padded_pixels(8192, 8192) == container.MAX_PIXELS
    assert container.padded_pixels(8130, 8150) == container.MAX_PIXELS
    assert container.padded_pixels(1, 67_108_864) == 64 * container.MAX_PIXELS


def test_a_header_claiming_a_thin_image_over_the_padded_limit_is_refused(small_file):
    stream = container.unpack(small_file)
    header = container.Header("two-layer", 3.0, stream.header.lmbda, stream.header.weights_id, 1, 67_108_864)
    data = container.pack(header, stream.z_string, stream.y_string)
    with pytest.raises(container.ContainerError, match="once padded"):
        shallowcodec.decompress(data)


def test_cli_refuses_a_thin_png_with_one_line(tmp_path, capsys):
    Image.new("RGB", (1_048_577, 1)).save(tmp_path / "thin.png")
    code, err = run_cli(capsys, "compress", tmp_path / "thin.png", "-o", tmp_path / "thin.sdc")
    assert "exceeds the limit" in one_line_error(code, err, "compress")
    assert not (tmp_path / "thin.sdc").exists()


# --- out of memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: "
                                                                 "you tried to allocate 51539607552 bytes.")])
def test_out_of_memory_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, error, small_file):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    (tmp_path / "a.sdc").write_bytes(small_file)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(codec.Codec, "compress", fail)
    monkeypatch.setattr(decoder.Decoder, "decode", fail)
    code, err = run_cli(capsys, "compress", tmp_path / "a.png", "-o", tmp_path / "b.sdc")
    assert one_line_error(code, err, "compress").endswith("out of memory")
    code, err = run_cli(capsys, "decompress", tmp_path / "a.sdc", "-o", tmp_path / "b.png")
    assert one_line_error(code, err, "decompress").endswith("out of memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.sdc"]


def test_other_runtime_errors_are_not_reported_as_out_of_memory(tmp_path, monkeypatch):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    monkeypatch.setattr(codec.Codec, "compress", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.sdc")])


# --- notices -------------------------------------------------------------------------------------

def animated(fmt: str) -> io.BytesIO:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:])
    buffer.seek(0)
    return buffer


def png16(height: int, width: int) -> bytes:
    """A 16-bit RGB PNG (Pillow reads it as 8-bit RGB without a word)."""
    rows = np.arange(height * width * 3, dtype=">u2").reshape(height, width * 3) * 97
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_animated_images_are_coded_from_the_first_frame_with_a_notice(fmt):
    x, notice = images.read_image(animated(fmt), name="anim")
    assert "first of its 3 frames" in notice
    assert x[:, 0, 0].tolist()[0] > 200 and x[:, 0, 0].tolist()[1] < 50  # red


def test_a_16_bit_png_gets_a_notice(tmp_path):
    (tmp_path / "deep.png").write_bytes(png16(4, 5))
    x, notice = images.read_image(tmp_path / "deep.png")
    assert notice == "16-bit samples reduced to 8 bits"
    assert x.shape == (3, 4, 5)


def test_cli_prints_the_frame_notice_as_one_line(tmp_path, capsys):
    (tmp_path / "anim.gif").write_bytes(animated("GIF").getvalue())
    code, err = run_cli(capsys, "compress", tmp_path / "anim.gif", "-o", tmp_path / "anim.sdc")
    assert code == 0 and err.strip().splitlines() == [
        "note: converted P image to RGB; animated image: coded the first of its 3 frames"]


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP")])
def test_decompressing_to_a_lossy_format_says_so(tmp_path, capsys, small_file, suffix, fmt):
    (tmp_path / "a.sdc").write_bytes(small_file)
    code, err = run_cli(capsys, "decompress", tmp_path / "a.sdc", "-o", tmp_path / f"out{suffix}")
    assert code == 0
    assert err.strip().splitlines() == [f"note: writing {fmt} adds a second lossy step to the decoded image "
                                        "(use .png to keep it exactly)"]
    assert Image.open(tmp_path / f"out{suffix}").format == fmt


def test_decompressing_to_png_has_no_notice(tmp_path, capsys, small_file):
    (tmp_path / "a.sdc").write_bytes(small_file)
    assert run_cli(capsys, "decompress", tmp_path / "a.sdc", "-o", tmp_path / "out.png") == (0, "")


# --- λ in the header -----------------------------------------------------------------------------

@pytest.mark.parametrize("lmbda, message", [(-1.0, "positive finite"), (0.0, "positive finite"),
                                            (1e30, "not λ of two-layer q3"), (0.5, "not λ of two-layer q3")])
def test_a_header_lambda_other_than_the_qualitys_is_refused(tmp_path, capsys, small_file, lmbda, message):
    data = with_lmbda(small_file, lmbda)
    with pytest.raises(container.ContainerError, match=message):
        shallowcodec.decompress(data)
    (tmp_path / "bad.sdc").write_bytes(data)
    code, err = run_cli(capsys, "decompress", tmp_path / "bad.sdc", "-o", tmp_path / "bad.png")
    assert message in one_line_error(code, err, "decompress")
    assert not (tmp_path / "bad.png").exists()


def test_the_files_own_lambda_decodes(small_file):
    assert shallowcodec.decompress(with_lmbda(small_file, container.unpack(small_file).header.lmbda)).size == (48, 32)


# --- "-" is stdin and stdout ---------------------------------------------------------------------

class Stdin:
    """A stand-in for sys.stdin with binary ``buffer``."""

    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


def test_dash_reads_stdin_and_writes_stdout_never_a_file(tmp_path, capsysbinary, monkeypatch, small_file):
    monkeypatch.chdir(tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (20, 10), "navy").save(png, "PNG")
    monkeypatch.setattr(sys, "stdin", Stdin(png.getvalue()))
    assert cli.main(["compress", "-", "-o", "-"]) == 0
    out = capsysbinary.readouterr()
    assert container.unpack(out.out).header.width == 20
    assert out.err.decode().startswith("<stdout>: two-layer q3, 20x10")
    monkeypatch.setattr(sys, "stdin", Stdin(out.out))
    assert cli.main(["decompress", "-", "-o", "-"]) == 0
    decoded = capsysbinary.readouterr().out
    assert decoded.startswith(b"\x89PNG") and Image.open(io.BytesIO(decoded)).size == (20, 10)
    assert list(Path(".").iterdir()) == []


def test_dash_through_a_real_pipe_is_binary_safe(tmp_path, small_file):
    command = [sys.executable, "-m", "shallowcodec.cli", "decompress", "-", "-o", "-"]
    result = subprocess.run(command, input=small_file, capture_output=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.stdout))),
                          np.asarray(shallowcodec.decompress(small_file)))
    assert list(tmp_path.iterdir()) == []


def test_garbage_on_stdin_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Stdin(b"not an image"))
    assert "<stdin>" in one_line_error(*run_cli(capsys, "compress", "-", "-o", "-"), "compress")
