"""Draw the book's logo and favicon: the RF box of one unit over an MNIST digit.

The picture of the Receptive fields chapter, pared down: the first test digit
(a 7) and, in red, the theoretical receptive field of the centre unit after
`block2.0` of `Model_4` (21 px, from the RF calculator), which frames the
digit. Written to _static/logo.png (192 px) and _static/favicon.png (32 px);
_config.yml names both. The files are committed, so a build needs no data;
re-run this after a change to the model or to `plots.rf_box`.

Usage: python scripts/logo.py [--data data] [--out _static]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_lib import load_mnist, plots  # noqa: E402
from mnist_lib.models import Model_4  # noqa: E402
from mnist_lib.rf import receptive_field, unit_box  # noqa: E402

LAYER = "block2.0.0"  # the centre unit's RF here (21 px) frames the digit
# (name, pixels, inches): the red line is 2 pt wide, about 2 px in the favicon.
SIZES = [("logo", 192, 2.0), ("favicon", 32, 0.5)]


def draw(digit, out: Path) -> list[Path]:
    """The logo and favicon of `digit` (a 28x28 tensor in [0, 1]) in `out`."""
    row = receptive_field(Model_4(), (1, 28, 28))[LAYER]
    centre = row.n_out // 2
    box = unit_box(row, centre, centre)
    written = []
    for name, pixels, inches in SIZES:
        fig = plots.rf_box(digit, box)
        fig.set_layout_engine(None)  # the digit fills the square, edge to edge
        ax = fig.axes[0]
        ax.set_title("")
        ax.set_axis_off()
        fig.subplots_adjust(0, 0, 1, 1)
        fig.set_size_inches(inches, inches)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=pixels / inches, metadata={"Software": None})
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/logo.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data", help="MNIST's folder")
    p.add_argument("--out", type=Path, default=ROOT / "_static")
    args = p.parse_args(argv)
    digit = load_mnist(args.data, verbose=False).test_images[0].float() / 255
    for path in draw(digit, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
