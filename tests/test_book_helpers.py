"""The chapters' helpers (`mnist_lib.book`): claims, glue and records."""

from __future__ import annotations

import io
import json
import re
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import chapter_records


ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ claims and glue
def test_claim_fails_the_build_and_only_notes_a_learners_run(monkeypatch, capsys):
    from mnist_lib import book

    monkeypatch.setattr(book.env, "QUICK", False)
    monkeypatch.setattr(book.env, "BUILD", True)
    assert book.claim(1 < 2, "holds") is None  # a cell ending in it shows nothing
    with pytest.raises(AssertionError, match=r"claim no longer holds: overfits "
                                             r"\(gap -0.10\)"):
        book.claim(False, "overfits", "gap -0.10")
    # A learner's run (Colab, Jupyter): a note with the numbers, and it goes on.
    monkeypatch.setattr(book.env, "BUILD", False)
    assert book.claim(False, "overfits", "gap -0.10") is None
    out = capsys.readouterr().out
    assert out.startswith("Note: the text says “overfits”, but this run does not "
                          "bear it out (gap -0.10).")
    assert all(w in out for w in ("seed", "device", "precision", "threads",
                                  "goes on"))
    book.claim(False, "the record credits it", live=False)
    assert "but the record does not bear it out. The recorded" in \
        capsys.readouterr().out
    book.claim(True, "holds")
    assert capsys.readouterr().out == ""


def test_quick_mode_reports_a_live_claim_and_checks_a_recorded_one(monkeypatch,
                                                                   capsys):
    from mnist_lib import book

    monkeypatch.setattr(book.env, "QUICK", True)
    monkeypatch.setattr(book.env, "BUILD", True)
    book.claim(False, "overfits")  # about a one-epoch toy run: reported only
    assert "[quick mode: not checked] overfits: False" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="claim no longer holds: it helps"):
        book.claim(False, "it helps", live=False)


def test_sized_keeps_all_the_data_and_only_quick_mode_slices_it(monkeypatch):
    """A chapter's own loop trains on `book.sized(data)`: the data itself in a
    learner's run and the full build, the first QUICK_SIZE digits in quick
    mode, as `book.train` shrinks its runs."""
    from mnist_lib import book
    from mnist_lib.data import MNIST

    n = 3000
    data = MNIST(torch.zeros(n, 28, 28, dtype=torch.uint8), torch.arange(n) % 10,
                 torch.zeros(n, 28, 28, dtype=torch.uint8), torch.arange(n) % 10)
    monkeypatch.setattr(book.env, "QUICK", False)
    assert book.sized(data) is data
    monkeypatch.setattr(book.env, "QUICK", True)
    few = book.sized(data)
    assert len(few.train_labels) == book.QUICK_SIZE["n_train"] < n
    assert len(few.test_labels) == book.QUICK_SIZE["n_test"] < n
    assert torch.equal(few.train_labels, data.train_labels[:len(few.train_labels)])


def test_glue_without_myst_nb_shows_only_what_it_is_asked_to(monkeypatch):
    from mnist_lib import book

    shown = []
    monkeypatch.setattr(book.render, "GLUED", {})  # this test's values only
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as in Colab: import fails
    monkeypatch.setattr("IPython.display.display", shown.append)
    assert book.glue("a", torch.tensor(0.5)) is None and shown == []
    book.glue("b", np.float64(2.5), display=True)
    # Scalars arrive as plain Python numbers, which glue can format.
    assert shown == [2.5] and type(shown[0]) is float


# ---------------------------------------------------- recorded results (records)
def test_record_in_a_checkout_is_the_local_file_never_a_download(monkeypatch, tmp_path):
    from mnist_lib import book

    def no_network(*args, **kwargs):
        raise AssertionError("a checkout must not download its records")

    monkeypatch.setattr(book.recorded.urllib.request, "urlopen", no_network)
    (tmp_path / "mnist_lib").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bench_cpu.json").write_text('{"epochs": 15}')
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # a notebook runs in book/
    assert book.checkout() == tmp_path and book.data_root() == tmp_path / "data"
    assert book.load_record("bench_cpu") == {"epochs": 15}
    with pytest.raises(FileNotFoundError, match="seeds_Model_9.json is missing: "
                                                "regenerate it"):
        book.load_record("seeds_Model_9")
    (tmp_path / "results" / "seeds_Model_4.json").write_text('{"seeds": [')
    with pytest.raises(ValueError, match="seeds_Model_4.json is not valid JSON .*"
                                         "restore it with git"):
        book.load_record("seeds_Model_4")


def test_records_outside_a_checkout_come_from_the_library_offline(monkeypatch,
                                                                  tmp_path):
    """After a pip install, outside any checkout and offline, a chapter reads
    every record it needs from the library, which carries them: the same
    records as the repository's results/ (test_api checks the built package)."""
    from mnist_lib import book

    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(book.recorded.urllib.request, "urlopen", offline)
    monkeypatch.setattr(book.recorded, "_FETCHED", {})
    monkeypatch.chdir(tmp_path)
    assert book.checkout() is None
    names = chapter_records()
    assert {"ladder", "ablation", "confirm", "final_test_round1", "bench_cpu"} <= names
    assert book.need_records(*names) is None
    for name in names:
        expected = json.loads((ROOT / "results" / f"{name}.json").read_text())
        assert book.load_record(name) == expected, name


def test_record_the_library_lacks_comes_from_the_repository(monkeypatch, tmp_path):
    """A record the installed library does not carry (a chapter newer than
    the library) is fetched from GitHub, once a kernel."""
    from mnist_lib import book

    monkeypatch.setattr(book.recorded, "shipped_folder", lambda: None)
    asked = []

    def fake_urlopen(url, timeout):
        asked.append(url)
        return io.BytesIO(b'{"epochs": 15}')

    monkeypatch.setattr(book.recorded.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(book.recorded, "_FETCHED", {})
    monkeypatch.chdir(tmp_path)  # Colab: /content, the library pip-installed
    assert book.checkout() is None
    assert book.load_record("bench_cpu") == {"epochs": 15}
    owner_repo = book.REPOSITORY.removeprefix("https://github.com/")
    assert asked == [f"https://raw.githubusercontent.com/{owner_repo}/main/"
                     "results/bench_cpu.json"]
    # Fetched once a kernel: a chapter that reads a record twice asks once.
    assert book.load_record("bench_cpu") == {"epochs": 15} and len(asked) == 1
    # A results/ folder beside the notebook comes first (downloaded by hand).
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ladder.json").write_text('{"arms": []}')
    assert book.load_record("ladder") == {"arms": []} and len(asked) == 1

    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(book.recorded.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match=r"could not be fetched from https://"
                       r"raw\.githubusercontent\.com/.*no route to host.*clone"
                       r".*pip install --upgrade git\+https://github\.com/"):
        book.load_record("final_test_round1")


def test_a_chapter_checks_its_records_before_it_trains(monkeypatch, tmp_path):
    """Offline, outside a checkout, with a library that carries no records and
    one record of two beside the notebook: `need_records` stops at once,
    naming the missing one and how to get it."""
    from mnist_lib import book

    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(book.recorded, "shipped_folder", lambda: None)
    monkeypatch.setattr(book.recorded.urllib.request, "urlopen", offline)
    monkeypatch.setattr(book.recorded, "_FETCHED", {})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ladder.json").write_text('{"arms": []}')
    assert book.need_records("ladder") is None
    with pytest.raises(FileNotFoundError) as err:
        book.need_records("ladder", "confirm")
    text = str(err.value)
    assert text.startswith("this chapter reads recorded results that it cannot read")
    assert "- confirm: " in text and "- ladder" not in text
    assert book.record_url("confirm") in text
    assert "download each file named above into a results/ folder" in text


def test_every_chapter_can_read_its_records_before_it_trains():
    """A chapter reads every record it needs (load_record, load_study), or
    checks that it can (`book.need_records`), before it trains: outside the
    checkout, a missing record stops it at once, not after minutes."""
    name = r"""["'](\w+)["']"""
    for md in sorted((ROOT / "book").glob("*.md")):
        text = md.read_text()
        trains = [m.start() for m in re.finditer(
            r"book\.train\(|fit\(|!python -m mnist_lib (?:train|seeds)", text)]
        first = min(trains, default=len(text))
        read = {(m.start(), m.group(1)) for m in re.finditer(
            r"book\.load_(?:record|study)\(" + name, text)}
        ready = {n for at, n in read if at < first}
        for call in re.finditer(r"book\.need_records\(([^)]*)\)", text):
            if call.start() < first:
                ready |= set(re.findall(name, call.group(1)))
        late = {n for _, n in read} - ready
        assert not late, (f"{md.name} reads {sorted(late)} only after it trains: "
                          "check them first with book.need_records")


def test_repository_is_the_one_config_and_install_cells_name():
    from mnist_lib import book

    config = (ROOT / "_config.yml").read_text()
    assert re.search(r"^\s+url: (\S+)$", config, re.M).group(1) == book.REPOSITORY
    assert re.search(r"^\s+branch: (\S+)$", config, re.M).group(1) == book.BRANCH
    for md in sorted((ROOT / "book").glob("*.md")):
        text = md.read_text()
        urls = set(re.findall(r'"git\+(https://[^"]+)"', text))
        # Every chapter with code installs the library, from that repository.
        assert urls == ({book.REPOSITORY} if "{code-cell}" in text else set()), md.name


# ------------------------------------------- Result blocks where myst-nb is absent
def test_show_fills_a_result_block_and_completes_it_as_values_arrive(monkeypatch):
    """In Colab a Result block is shown with the run's numbers (`book.show`);
    one shown before a later cell glues its value is filled in when it does."""
    from IPython.display import Markdown

    from mnist_lib import book

    class Handle:  # what IPython's display(..., display_id=True) returns
        def __init__(self, obj):
            self.shown = [obj]

        def update(self, obj):
            self.shown.append(obj)

    handles = []

    def display(obj, display_id=None):
        handles.append(Handle(obj))
        return handles[-1]

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as in Colab: not installed
    monkeypatch.setattr("IPython.display.display", display)
    monkeypatch.setattr(book.render, "GLUED", {})
    monkeypatch.setattr(book.render, "_PENDING", [])
    book.glue("t_params", "7,764")
    book.glue("t_acc", 99.456)
    book.show("> **Result**\n>\n> - Parameters: {glue:text}`t_params`, "
              "accuracy {glue:text}`t_acc:.2f`%, met: {glue:text}`t_met`")
    first = handles[0].shown[-1]
    assert isinstance(first, Markdown)
    assert "Parameters: 7,764, accuracy 99.46%, met: …" in first.data
    assert "not computed yet" in first.data and "t_met" in first.data
    book.glue("t_met", "yes")
    assert handles[0].shown[-1].data.endswith("met: yes")
    assert not book.render._PENDING  # complete: no longer waiting
    assert book.fill("{glue:text}`t_met` {glue:text}`nope`") == ("yes …", ["nope"])


@pytest.mark.parametrize("seconds, base, words", [
    (2.3, 1.0, "2.3× as long as"),
    (1.12, 1.0, "12% longer than"),
    (1.01, 1.0, "about as long as"),
    (1.04, 1.0, "about as long as"),
    (0.96, 1.0, "about as long as"),
    (0.92, 1.0, "8% less time than"),
    (0.25, 1.0, "75% less time than"),
])
def test_time_change_words_hold_whichever_way_a_time_comes_out(seconds, base, words):
    from mnist_lib import book

    assert book.time_change(seconds, base) == words


def test_time_change_calls_a_difference_inside_the_measured_noise_no_difference():
    """A page that timed several rounds passes how far they lay apart: a
    difference inside that spread reads "about as long as", either way."""
    from mnist_lib import book

    assert book.time_change(1.2, 1.0, noise=0.3) == "about as long as"
    assert book.time_change(1.0, 1.2, noise=0.3) == "about as long as"
    assert book.time_change(1.4, 1.0, noise=0.3) == "40% longer than"
    assert book.time_change(0.7, 1.0, noise=0.3) == "30% less time than"


def test_a_recorded_model_is_found_as_a_record_is(monkeypatch, tmp_path):
    """`book.load_model` reads results/<name>.pt where `load_record` would read
    a record: from the checkout, else (Colab) fetched from the repository;
    either way the same weights, ready to predict."""
    from mnist_lib import book, save_checkpoint
    from mnist_lib.models import Model_1
    from mnist_lib.training.history import History

    net = Model_1().eval()
    hist = History("Model_1", 0, {}, {})
    hist.normalization = {"mean": 0.13, "std": 0.31}
    for folder in ("mnist_lib", "results", "book"):
        (tmp_path / "repo" / folder).mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("")
    saved = save_checkpoint(tmp_path / "repo" / "results" / "final_model.pt", net, hist)
    monkeypatch.chdir(tmp_path / "repo" / "book")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        expected = book.load_model("final_model").net(x)
        assert torch.equal(expected, net(x))
    with pytest.raises(FileNotFoundError, match="final_model_9.pt is missing"):
        book.load_model("final_model_9")

    # Outside a checkout, with a library that carries no such file: fetched.
    asked = []

    def fake_urlopen(url, timeout):
        asked.append(url)
        return io.BytesIO(saved.read_bytes())

    monkeypatch.setattr(book.recorded, "shipped_folder", lambda: None)
    monkeypatch.setattr(book.recorded.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(book.recorded, "_FETCHED", {})
    (tmp_path / "colab").mkdir()
    monkeypatch.chdir(tmp_path / "colab")
    with torch.no_grad():
        assert torch.equal(book.load_model("final_model").net(x), expected)
    assert [u.rsplit("/", 2)[-2:] for u in asked] == [["results", "final_model.pt"]]


def test_percents_prints_accuracies_as_the_pages_do():
    from mnist_lib import book

    assert book.percents([99.48, 99.4, 98.125]) == "99.48%, 99.40%, 98.12%"
    assert book.percents([]) == ""
