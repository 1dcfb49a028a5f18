"""Helpers the book's chapters share, one module a job:

- `env`: where a chapter runs: quick mode, the book build, the repository
  and its checkout, where MNIST is kept;
- `render`: `glue`, and where myst-nb is absent (Colab, Jupyter) a Result
  block shown with this run's values (`show`);
- `claims`: `claim`, a claim of the prose checked against its numbers, and
  words for measured times that hold whichever way they come out;
- `recorded`: the recorded results (`results/*.json`, and a recorded model,
  `load_model`), from the checkout or,
  in Colab and after a pip install, from the package, which carries them
  (else GitHub), and `need_records`, which a chapter calls before it trains;
- `runs`: the chapters' trainer (quick mode shrinks it) and the glue of a
  run's or a study's numbers.

Chapters run in the book build (myst-nb), in Colab/Binder and locally; none of
those may need build-only tools. A chapter imports this package
(`from mnist_lib import book`) and calls `book.train`, `book.glue`, ...
"""

from . import env
from .claims import bench_lag, claim, time_change
from .env import BRANCH, QUICK_SIZE, REPOSITORY, checkout, data_root, repo_root
from .recorded import load_model, load_record, need_records, record_url, shipped_folder
from .render import GLUE_ROLE, GLUED, fill, glue, show, source
from .runs import glue_arm, glue_result, load_study, percents, sized, train

__all__ = ["BRANCH", "BUILD", "GLUED", "GLUE_ROLE", "QUICK", "QUICK_SIZE",
           "REPOSITORY", "bench_lag", "checkout", "claim", "data_root", "fill",
           "glue", "glue_arm", "glue_result", "load_model", "load_record", "load_study",
           "need_records", "percents", "record_url", "repo_root", "shipped_folder",
           "show", "sized", "source", "time_change", "train"]


def __getattr__(name: str):
    """`book.QUICK` and `book.BUILD` read `env`'s, the one place they are
    set (a copy made here at import would miss a change made there)."""
    if name in ("QUICK", "BUILD"):
        return getattr(env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
