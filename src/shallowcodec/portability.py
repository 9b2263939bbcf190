"""Check that files decode to the same ŷ on every CPU: decode under other kernel sets in subprocesses.

    python -m shallowcodec.portability ../shared/data/photos24 [--qualities 0 3 6] [--models ...] [--crop 256]

encodes every image with every embedded model at each quality (natively, and once more in a
process restricted to AVX2 kernels), then decodes all files in subprocesses under each kernel
set of :data:`KERNEL_SETS` (oneDNN ISA × ATen CPU capability, and OpenBLAS core types for the
numpy decoder), each with the numpy decoder that users run (decoder.py; 1 and 2 OpenBLAS threads)
and with the torch model's g_s (oneDNN on and off, 1 and 2 threads) on the Codec's ŷ, and
compares with the native torch decode: ŷ must be bit-identical (the entropy parameters are
exact, entropy_parameters.py) and every pixel within ±1 (g_s runs in float32, whose sums
differ in the last bits between kernels, as JPEG decoders differ by one level). Prints one line
per kernel set and exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: Kernel sets a decoder may run with: oneDNN's instruction set (native, AVX2, SSE4.1) × ATen's CPU
#: capability (no SIMD, AVX2); the reference decode runs in-process with the native (AVX-512) kernels.
KERNEL_SETS = [
    {**isa, **aten}
    for isa, aten in itertools.product(
        [{}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ONEDNN_MAX_CPU_ISA": "SSE41"}],
        [{"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2"}],
    )
] + [{"OPENBLAS_CORETYPE": "Haswell"}, {"OPENBLAS_CORETYPE": "Sandybridge"}]  # numpy's BLAS: AVX2, AVX
#: Variants inside each process: (decoder, oneDNN enabled, threads); "torch" is the model's decode
#: (codec.Codec), "numpy" the torch-free decoder (decoder.py, threads of OpenBLAS).
VARIANTS = [("torch", mkldnn, threads) for mkldnn in (True, False) for threads in (1, 2)] + [
    ("numpy", False, threads) for threads in (1, 2)]
#: The kernel set of the "encoded elsewhere" files: a CPU without AVX-512.
ENCODER_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def decoders_of(env: dict[str, str]) -> tuple[str, ...]:
    """The decoders a kernel set affects: OpenBLAS core types only the numpy decoder's, oneDNN and ATen only torch's."""
    return ("numpy",) if "OPENBLAS_CORETYPE" in env else ("torch",)


def decode_files(files: list[Path], out: Path, all_pixels: bool = True, kinds: tuple[str, ...] = ("torch", "numpy")) -> None:
    """Decode ``files`` under this process's kernels, once per :data:`VARIANTS` of the decoders ``kinds``;
    write ``out`` (.npz).

    The archive holds, per file and variant, the SHA-256 of ŷ (float64 bytes), keyed
    ``<i>/<variant>/y``, and the decoded (3, H, W) uint8 image, ``<i>/<variant>/x`` — for every
    variant, or with ``all_pixels=False`` for the first of each decoder only (g_s is the expensive part).
    """
    arrays, codecs = {}, {}
    for n, (kind, mkldnn, threads) in enumerate(VARIANTS):
        if kind not in kinds:
            continue
        decode = _torch_decoder(codecs, mkldnn, threads) if kind == "torch" else _numpy_decoder(threads)
        for i, path in enumerate(files):
            y_hat, render = decode(path.read_bytes())
            arrays[f"{i}/{variant_key(n)}/y"] = np.frombuffer(hashlib.sha256(y_hat.tobytes()).digest(), np.uint8)
            if all_pixels or VARIANTS[n - 1][0] != kind or n == 0:
                arrays[f"{i}/{variant_key(n)}/x"] = render()
    np.savez(out, **arrays)


def variant_key(n: int) -> str:
    """Archive key of variant ``n`` of :data:`VARIANTS`, e.g. "torch-11" (oneDNN on, 1 thread)."""
    kind, mkldnn, threads = VARIANTS[n]
    return f"{kind}-{int(mkldnn)}{threads}"


def _torch_decoder(codecs: dict, mkldnn: bool, threads: int):
    """bytes → (ŷ float64 ndarray, a function giving the (3, H, W) pixels) with the torch model: ŷ by
    codec.Codec.decode_latents, pixels by its torch g_s (hyperprior.ShallowHyperprior.reconstruct);
    ``codecs`` caches a codec per (model, quality)."""
    import torch

    from shallowcodec.codec import load
    from shallowcodec.container import unpack

    torch.backends.mkldnn.enabled = mkldnn
    torch.set_num_threads(threads)

    def decode(data: bytes):
        stream = unpack(data)
        key = (stream.header.architecture, stream.header.quality)
        if key not in codecs:
            codecs[key] = load(*key)
        codec = codecs[key]
        y_hat = codec.decode_latents(stream)

        def render():  # the torch g_s that training and the eval-mode forward use
            with torch.no_grad():
                x_hat = codec.loaded.model.reconstruct(y_hat, codec.quality)
            return x_hat.clamp_(0, 1).mul_(255).round_().to(torch.uint8)[0, :, : stream.header.height,
                                                                           : stream.header.width].numpy()
        return y_hat.numpy(), render
    return decode


def _numpy_decoder(threads: int):
    """bytes → (ŷ, a function giving the (3, H, W) pixels) with the torch-free decoder on ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_limits

    from shallowcodec.container import unpack
    from shallowcodec.decoder import embedded_decoder

    def decode(data: bytes):
        stream = unpack(data)
        h, decoder = stream.header, embedded_decoder(stream.header.architecture)
        with threadpool_limits(limits=threads, user_api="blas"):
            y_hat = decoder.decode_latents(stream)

        def render():
            with threadpool_limits(limits=threads, user_api="blas"):
                return decoder.render(y_hat, h.quality, h.height, h.width).transpose(2, 0, 1)
        return y_hat, render
    return decode


def encode_files(images: list[Path], models: list[str], qualities: list[float], crop: int, out: Path) -> list[Path]:
    """Encode every (image, model, quality) into ``out``; images are cut to their top-left ``crop`` square
    (0: whole). Returns the file paths in a fixed order."""
    from PIL import Image

    from shallowcodec.codec import load

    files = []
    for model, quality in itertools.product(models, qualities):
        codec = load(model, quality)
        for image in images:
            with Image.open(image) as im:
                im = im.convert("RGB")
                if crop:
                    im = im.crop((0, 0, min(crop, im.width), min(crop, im.height)))
                path = out / f"{image.stem}-{model}-q{quality:g}.sdc"
                path.write_bytes(codec.compress(im))
                files.append(path)
    return files


def run_worker(argv: list[str], env: dict[str, str]) -> None:
    """Run this module's worker in a subprocess with extra environment variables ``env``.

    Raises:
        RuntimeError: the worker failed (its last stderr line).
    """
    result = subprocess.run([sys.executable, "-m", "shallowcodec.portability", *argv], env={**os.environ, **env},
                            capture_output=True, text=True)
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"worker {env or 'native'} failed: {lines[-1]}")


def compare(reference: dict, other: dict, n_files: int) -> tuple[int, int]:
    """(files whose ŷ differs, largest pixel difference) of ``other`` against the native ``reference``,
    both loaded from :func:`decode_files` archives, over all variants."""
    y_diffs, pixel_diff = 0, 0
    native = variant_key(0)
    for i, n in itertools.product(range(n_files), range(len(VARIANTS))):
        key = f"{i}/{variant_key(n)}"
        if f"{key}/y" not in other:  # a decoder this kernel set does not affect
            continue
        y_diffs += not np.array_equal(other[f"{key}/y"], reference[f"{i}/{native}/y"])
        if f"{key}/x" in other:
            diff = np.abs(other[f"{key}/x"].astype(int) - reference[f"{i}/{native}/x"].astype(int)).max()
            pixel_diff = max(pixel_diff, int(diff))
    return y_diffs, pixel_diff


def check(images: list[Path], models: list[str], qualities: list[float], crop: int, all_pixels: bool = True,
          kernel_sets=KERNEL_SETS, native_only: bool = False) -> dict:
    """Encode natively and under :data:`ENCODER_KERNELS`, decode under every kernel set with the decoders it
    affects (:func:`decoders_of`; ŷ in every variant; pixels in every variant, or with ``all_pixels=False``
    in the first of each decoder) and natively with both; returns {"files": n, "variants": 6, "kernels":
    [{"env", "y_mismatches", "max_pixel_diff"}, ...]} (first row: native, last: the AVX2-encoding process).
    ``native_only``: the first row only (the numpy decoder against the torch model in this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "native").mkdir()
        (tmp / "avx2").mkdir()
        spec = json.dumps({"images": [str(i) for i in images], "models": models, "qualities": qualities, "crop": crop})
        files = encode_files(images, models, qualities, crop, tmp / "native")
        if native_only:
            decode_files(files, tmp / "native.npz", all_pixels)
            reference = dict(np.load(tmp / "native.npz"))
            y_diffs, pixel_diff = compare(reference, reference, len(files))
            return {"files": len(files), "variants": len(VARIANTS), "kernels": [
                {"env": {"native": "all variants in one process"}, "y_mismatches": y_diffs, "max_pixel_diff": pixel_diff}]}
        run_worker(["_encode", spec, str(tmp / "avx2")], ENCODER_KERNELS)
        files += sorted((tmp / "avx2").glob("*.sdc"))
        listing = tmp / "files.json"
        listing.write_text(json.dumps([str(f) for f in files]))
        decode_files(files, tmp / "native.npz", all_pixels)
        reference = dict(np.load(tmp / "native.npz"))
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # the workers are processes: run them side by side
            list(pool.map(lambda job: run_worker(["_decode", str(listing), str(tmp / f"{job[0]}.npz"),
                                                      str(int(all_pixels)), ",".join(decoders_of(job[1]))], job[1]),
                          [*enumerate(kernel_sets), ("enc", ENCODER_KERNELS)]))
        y_diffs, pixel_diff = compare(reference, reference, len(files))  # in-process: numpy decoder and torch variants
        results = [{"env": {"native": "all variants in one process"}, "y_mismatches": y_diffs, "max_pixel_diff": pixel_diff}]
        for n, env in enumerate(kernel_sets):
            y_diffs, pixel_diff = compare(reference, dict(np.load(tmp / f"{n}.npz")), len(files))
            results.append({"env": env, "y_mismatches": y_diffs, "max_pixel_diff": pixel_diff})
        # every file, decoded natively, against the decode in the process that encoded the AVX2 files
        y_diffs, pixel_diff = compare(dict(np.load(tmp / "enc.npz")), reference, len(files))
        results.append({"env": {"encoded under": ENCODER_KERNELS}, "y_mismatches": y_diffs, "max_pixel_diff": pixel_diff})
    return {"files": len(files), "variants": len(VARIANTS), "kernels": results}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_decode"]:
        decode_files([Path(f) for f in json.loads(Path(argv[1]).read_text())], Path(argv[2]), argv[3] == "1",
                     tuple(argv[4].split(",")))
        return 0
    if argv[:1] == ["_encode"]:
        spec = json.loads(argv[1])
        encode_files([Path(i) for i in spec["images"]], spec["models"], spec["qualities"], spec["crop"], Path(argv[2]))
        return 0
    from shallowcodec.images import image_files
    from shallowcodec.model_files import embedded_models

    parser = argparse.ArgumentParser(prog="python -m shallowcodec.portability", description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="an image or a folder of images")
    parser.add_argument("--models", nargs="+", default=sorted(embedded_models()))
    parser.add_argument("--qualities", nargs="+", type=float, default=[0.0, 3.0, 6.0])
    parser.add_argument("--crop", type=int, default=0, help="code the top-left crop×crop square of each image (0: all)")
    parser.add_argument("--pixels-once", action="store_true",
                        help="compare pixels in one variant per decoder and kernel set (ŷ still in all): less g_s work")
    parser.add_argument("--native-only", action="store_true",
                        help="one process: every variant (the numpy decoder, the torch model) against the torch decode")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    images = image_files(args.images) if args.images.is_dir() else [args.images]
    result = check(images, args.models, args.qualities, args.crop, all_pixels=not args.pixels_once,
                   native_only=args.native_only)
    for row in result["kernels"]:
        print(f"{json.dumps(row['env']):70s} ŷ mismatches {row['y_mismatches']:4d}   max |Δpixel| {row['max_pixel_diff']}")
    print(f"{result['files']} files × {result['variants']} variants per kernel set (torch: oneDNN on/off × 1, 2 threads; "
          "numpy decoder: 1, 2 BLAS threads)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = all(r["y_mismatches"] == 0 and r["max_pixel_diff"] <= 1 for r in result["kernels"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
