"""The scripts in examples/ run, at their smoke size, and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{name} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def psnr_of(output: str, label: str) -> float:
    line = next(line for line in output.splitlines() if line.startswith(label))
    return float(line.split("PSNR")[1].split()[0])


def test_every_example_has_a_test_and_a_smoke_option():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts, "no examples found"
    tested = Path(__file__).read_text()
    for name in scripts:
        assert f'"{name}"' in tested, f"examples/{name} is not run by tests/test_examples.py"
        assert "--smoke" in (EXAMPLES / name).read_text(), f"examples/{name} has no --smoke option"


def test_simulate_and_reconstruct():
    out = run_example("simulate_and_reconstruct.py", "--smoke")
    fbp, cgls, tv = psnr_of(out, "FBP"), psnr_of(out, "CGLS"), psnr_of(out, "TV")
    assert 20 < fbp < cgls < tv  # at 32² with 5 % noise: about 27, 31 and 37 dB


def test_train_small_model(tmp_path):
    out = run_example("train_small_model.py", "--smoke", "--run-dir", str(tmp_path / "run"))
    assert (tmp_path / "run" / "best.safetensors").exists()
    assert (tmp_path / "run" / "best.json").exists()
    assert "trained 4 steps" in out
    trained, reloaded = (float(line.split("PSNR")[1].split()[0]) for line in out.splitlines() if "PSNR" in line)
    assert reloaded == pytest.approx(trained, abs=0.01)  # the checkpoint reloads to the same model


def test_evaluate_on_your_images_with_numpy_and_the_demo(tmp_path):
    out = run_example("evaluate_on_your_images.py", "--smoke")
    assert psnr_of(out, "lpd-ellipses") > psnr_of(out, "FBP") + 3
    images = np.random.default_rng(0).random((3, 40, 50)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", slices=images, other=images[:1])
    out = run_example("evaluate_on_your_images.py", "--images", str(tmp_path / "mine.npz"), "--key", "slices")
    assert out.startswith("3 image(s) from mine.npz, resized to (128, 128)")


def test_evaluate_on_your_images_with_a_dicom_folder(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = tmp_path / "dicom"
    folder.mkdir()
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    for instance in (1, 2):
        disc = ((xx**2 + yy**2) < 0.5 * instance / 2).astype(np.uint16) * 1000 + 24
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.Rows, ds.Columns = disc.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.InstanceNumber = instance
        ds.PixelData = disc.tobytes()
        ds.save_as(folder / f"slice{instance}.dcm", enforce_file_format=True)
    out = run_example("evaluate_on_your_images.py", "--images", str(folder), "--model", "lgd-ellipses")
    assert out.startswith("2 image(s) from dicom, resized to (128, 128)")
    assert psnr_of(out, "lgd-ellipses") > psnr_of(out, "FBP")


def test_compare_methods():
    out = run_example("compare_methods.py", "--smoke")
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {line.split("|")[1].strip(): line for line in table}
    assert len(rows) == 7  # the header and six methods
    shepp_logan = {name: float(row.split("|")[2].split("/")[0]) for name, row in rows.items() if name != "method"}
    assert shepp_logan["LPD (shipped)"] > max(v for k, v in shepp_logan.items() if "shipped" not in k) + 5
