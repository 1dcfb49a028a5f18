"""What a requirements file installs, measured: Binder's image, before it is built.

A pip dry-run resolves the file from the repository root, as repo2docker runs
it (`--ignore-installed`: everything counts, as in a fresh image); pip then
downloads the wheels it chose and this sums their size, packed and unpacked.
torch, torchvision and the GPU libraries that PyPI's torch brings (nvidia-*,
cuda-*, triton) are left out of the sum: Binder takes torch's CPU build from
PyTorch's own index, the same in every variant of the file, and that index may
be out of reach where this runs (pip then resolves PyPI's torch instead).

Usage: python scripts/binder_size.py [REQUIREMENTS]   (default binder/requirements.txt)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$", re.I)
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def resolve(requirements: Path) -> list[dict]:
    """pip's report of what `pip install -r requirements` would install."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([*PIP, "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--timeout", "10", "--retries", "1", "--report", str(report),
                        "-r", str(requirements)], cwd=ROOT, check=True)
        return json.loads(report.read_text())["install"]


def measure(items: list[dict]) -> tuple[int, int, list[str]]:
    """(packed bytes, unpacked bytes, names) of the wheels of `items`, the
    local checkout (the library itself) counted as nothing."""
    pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items
            if not i["download_info"]["url"].startswith(ROOT.as_uri())]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*PIP, "download", "--no-deps", "--only-binary", ":all:",
                        "--quiet", "-d", tmp, *pins], cwd=ROOT, check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        packed = sum(w.stat().st_size for w in wheels)
        unpacked = sum(f.file_size for w in wheels
                       for f in zipfile.ZipFile(w).infolist())
    return packed, unpacked, sorted(i["metadata"]["name"] for i in items)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/binder_size.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("requirements", type=Path, nargs="?",
                   default=ROOT / "binder" / "requirements.txt")
    args = p.parse_args(argv)
    items = resolve(args.requirements.resolve())
    counted = [i for i in items if not LEFT_OUT.match(i["metadata"]["name"])]
    packed, unpacked, names = measure(counted)
    print(f"{args.requirements}: {len(counted)} packages besides torch, torchvision "
          f"and GPU libraries: {packed / 1e6:.0f} MB of wheels, "
          f"{unpacked / 1e6:.0f} MB installed")
    print("  " + ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
