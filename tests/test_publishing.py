"""Publishing the book: the one repository setting and `make repository`, and
what the published site carries (logo, favicon, address, footer, citation)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.support import load_script

ROOT = Path(__file__).resolve().parents[1]
repository = load_script("repository")


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


# ------------------------------------------------------- the repository, once
def test_the_repository_is_named_only_where_make_repository_writes_it():
    slug, _ = repository.setting()
    places = set(repository.places())
    others = [str(p.relative_to(ROOT)) for p in repository.naming_files(slug)
              if p not in places]
    assert not others, (f"{others} name {slug}: `make repository` would leave them "
                        "behind; name it through a place scripts/repository.py "
                        "rewrites (PLACES), or add the file there")


def test_every_place_names_the_setting():
    from mnist_lib import book

    slug, branch = repository.setting()
    assert config()["repository"] == {"url": f"https://github.com/{slug}",
                                      "branch": branch, "path_to_book": ""}
    assert (book.REPOSITORY, book.BRANCH) == (f"https://github.com/{slug}", branch)
    site = repository.pages_url(slug)
    assert config()["html"]["baseurl"] == site
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls == {"Homepage": site, "Source": f"https://github.com/{slug}",
                    "Issues": f"https://github.com/{slug}/issues"}
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert (cff["url"], cff["repository-code"]) == (site, f"https://github.com/{slug}")
    deploy = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    assert deploy["jobs"]["deploy"]["if"] == (
        f"github.repository == '{slug}' && github.ref == 'refs/heads/{branch}'")
    assert deploy[True]["push"]["branches"] == [branch]  # YAML 1.1 reads `on` as True


def copy_of_the_checkout(dest: Path) -> Path:
    """The tracked files (as they are in the work tree) copied to `dest`."""
    for path in repository.tracked(ROOT):
        target = dest / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def test_make_repository_renames_it_everywhere(tmp_path):
    """In a copy of the checkout: every mention of the old name and branch is
    gone, the twins are still what scripts/twins.py makes of the chapters,
    and the setting reads back as the new one."""
    copy = copy_of_the_checkout(tmp_path / "copy")
    old_slug, old_branch = repository.setting()
    new = "Some-One/elsewhere"
    done = subprocess.run([sys.executable, "scripts/repository.py", new, "--branch",
                           "trunk"], cwd=copy, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert repository.setting(copy) == (new, "trunk")
    assert repository.naming_files(old_slug, copy) == []
    renamed = {p.relative_to(copy) for p in repository.naming_files(new, copy)}
    assert renamed >= {Path("_config.yml"), Path("mnist_lib/book/env.py"),
                       Path("pyproject.toml"), Path("CITATION.cff"), Path("README.md"),
                       Path(".github/workflows/book.yml"), Path("book/intro.md"),
                       Path("book/intro.ipynb")}
    text = (copy / "_config.yml").read_text()
    assert "baseurl: https://some-one.github.io/elsewhere/" in text
    assert f"/blob/{old_branch}/" not in text and "/blob/trunk/LICENSE" in text
    assert 'BRANCH = "trunk"' in (copy / "mnist_lib/book/env.py").read_text()
    flow = (copy / ".github/workflows/book.yml").read_text()
    assert "github.repository == 'Some-One/elsewhere'" in flow
    assert "refs/heads/trunk" in flow and "branches: [trunk]" in flow
    twins = subprocess.run([sys.executable, "scripts/twins.py", "--check",
                            *sorted(map(str, (copy / "book").glob("*.md")))],
                           cwd=copy, capture_output=True, text=True)
    assert twins.returncode == 0, twins.stderr
    assert "colab.research.google.com/github/Some-One/elsewhere/blob/trunk/book/" \
        in (copy / "book/step1.ipynb").read_text()


def test_make_repository_refuses_a_name_that_is_not_owner_slash_name(tmp_path, capsys):
    assert repository.main(["not a repository"]) == 2
    assert "is not OWNER/NAME" in capsys.readouterr().err


def test_rewrite_renames_the_repository_and_only_its_branch():
    old, new = ("a-b/c", "main"), ("x/y.z", "trunk")
    text = ("url: https://github.com/a-b/c\n  branch: main\n"
            "https://github.com/a-b/c/blob/main/LICENSE https://a-b.github.io/c/book\n"
            "https://github.com/other/c/blob/main/x a-b/cc a-b/c-d 'a-b/c'\n"
            'BRANCH = "main"\nif: github.ref == \'refs/heads/main\'\n'
            "    branches: [main]\n")
    assert repository.rewrite(text, old, new) == (
        "url: https://github.com/x/y.z\n  branch: trunk\n"
        "https://github.com/x/y.z/blob/trunk/LICENSE https://x.github.io/y.z/book\n"
        "https://github.com/other/c/blob/main/x a-b/cc a-b/c-d 'x/y.z'\n"
        'BRANCH = "trunk"\nif: github.ref == \'refs/heads/trunk\'\n'
        "    branches: [trunk]\n")


@pytest.mark.parametrize("slug, site", [
    ("some-org/a-book", "https://some-org.github.io/a-book/"),
    ("Octo-Cat/Book", "https://octo-cat.github.io/Book/"),
    ("octocat/octocat.github.io", "https://octocat.github.io/"),  # a user's own site
])
def test_pages_address_of_a_repository(slug, site):
    assert repository.pages_url(slug) == site
    assert repository.naming(slug).search(f"see {site} or github.com/{slug}.")


# ------------------------------------------------------- what the site carries
def test_site_has_its_extensions_address_favicon_and_logo():
    conf = config()
    assert {"sphinx_sitemap", "notfound.extension", "sphinxext.opengraph"} <= set(
        conf["sphinx"]["extra_extensions"])
    assert conf["sphinx"]["local_extensions"]["published"] == "_ext"
    assert (ROOT / conf["logo"]).is_file()
    assert (ROOT / conf["html"]["favicon"]).is_file()
    assert conf["sphinx"]["config"]["ogp_image"] == conf["logo"]
    footer = conf["html"]["extra_footer"]
    slug, branch = repository.setting()
    for link in ("LICENSE", "CITATION.cff"):
        assert f"https://github.com/{slug}/blob/{branch}/{link}" in footer
    assert all(name in footer for name in ("LeCun", "Cortes", "Burges"))
    # The packages that provide them, pinned with a range as the others are.
    pins = (ROOT / "requirements.txt").read_text()
    for package in ("sphinx-sitemap", "sphinx-notfound-page", "sphinxext-opengraph",
                    "check-jsonschema"):
        assert f"\n{package}>=" in pins and "<" in pins.split(f"\n{package}>=")[1][:12]


def test_citation_names_the_book_as_the_config_does():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    conf = config()
    assert cff["title"] == conf["title"]
    assert [a["name"] for a in cff["authors"]] == [conf["author"]]
    assert cff["license"] == tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["license"]
    mnist = cff["references"][0]
    names = [a["family-names"] for a in mnist["authors"]]
    assert names == ["LeCun", "Cortes", "Burges"]


def test_published_extension_takes_address_and_title_from_the_config():
    published = _load_ext("published")
    conf = SimpleNamespace(html_baseurl="https://o.github.io/name/", ogp_site_url="",
                           ogp_site_name=None, html_title="T", html_theme_options={},
                           notfound_urls_prefix="/en/latest/")
    published.derive(None, conf)
    assert conf.ogp_site_url == "https://o.github.io/name/"
    assert conf.notfound_urls_prefix == "/name/"
    assert conf.ogp_site_name == "T" and conf.html_theme_options["logo"]["text"] == "T"
    conf = SimpleNamespace(html_baseurl="https://o.github.io/", ogp_site_url="",
                           ogp_site_name="S", html_title="T",
                           html_theme_options={"logo": {"text": "L"}},
                           notfound_urls_prefix="/en/latest/")
    published.derive(None, conf)
    assert conf.notfound_urls_prefix == "/" and conf.ogp_site_name == "S"
    assert conf.html_theme_options["logo"]["text"] == "L"


def test_the_download_is_the_twin_or_nothing(tmp_path):
    published = _load_ext("published")
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "book").mkdir(parents=True)
    (out / "_sources" / "book").mkdir(parents=True)
    (src / "book" / "a.ipynb").write_text("twin")
    app = SimpleNamespace(srcdir=str(src), outdir=str(out))
    for page in ("a", "b"):
        (out / "_sources" / "book" / f"{page}.ipynb").write_text("{glue:text}`x`")
    buttons = lambda: [{"label": "download-buttons", "buttons": [  # noqa: E731
        {"label": "download-notebook-button"}, {"label": "download-source-button"}]}]
    context = {"ipynb_source": "book/a.ipynb", "header_buttons": buttons()}
    published.twin_download(app, "book/a", "page.html", context, None)
    assert (out / "_sources/book/a.ipynb").read_text() == "twin"
    assert len(context["header_buttons"][0]["buttons"]) == 2
    context = {"ipynb_source": "book/b.ipynb", "header_buttons": buttons()}
    published.twin_download(app, "book/b", "page.html", context, None)
    assert not (out / "_sources/book/b.ipynb").exists()
    left = context["header_buttons"][0]["buttons"]
    assert left == [{"label": "download-source-button"}]
    # A twin that changed while its page was not written again: the build's
    # end puts it in place all the same.
    (src / "book" / "a.ipynb").write_text("twin, again")
    app.builder = SimpleNamespace(format="html")
    published.refresh_twins(app, None)
    assert (out / "_sources/book/a.ipynb").read_text() == "twin, again"


def _load_ext(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_logo_and_favicon_are_what_scripts_logo_draws(mnist, tmp_path):
    """The committed pictures, drawn again from the same digit and model:
    pixel for pixel, but for antialiasing that may differ between versions."""
    import numpy as np
    from PIL import Image

    logo = load_script("logo")
    digit = mnist.test_images[0].float() / 255
    for path in logo.draw(digit, tmp_path):
        committed = ROOT / "_static" / path.name
        new, old = (np.asarray(Image.open(p).convert("RGB"), dtype=float)
                    for p in (path, committed))
        assert new.shape == old.shape
        assert np.abs(new - old).mean() < 2, f"{committed} is stale: python " \
            "scripts/logo.py draws it again"
    assert Image.open(ROOT / "_static/favicon.png").size == (32, 32)


# ---------------------------------------------- the built site (make test builds it)
@pytest.fixture(scope="module")
def built():
    """The built site's folder: $BOOK_HTML, else the full or the quick build."""
    env = os.environ.get("BOOK_HTML")
    found = [Path(env)] if env else [ROOT / "_build/html",
                                     ROOT / "_build/quick/_build/html"]
    html = next((p for p in found if (p / "index.html").exists()), None)
    if html is None:
        pytest.skip("no built book: run `make book-quick` (or set BOOK_HTML)")
    return html


def pages(html: Path) -> list[Path]:
    return sorted((html / "book").glob("*.html"))


@pytest.mark.book
def test_site_has_a_sitemap_a_404_page_and_its_address(built):
    site = config()["html"]["baseurl"]
    listed = re.findall(r"<loc>([^<]+)</loc>", (built / "sitemap.xml").read_text())
    assert sorted(listed) == [f"{site}book/{p.name}" for p in pages(built)]
    missing = (built / "404.html").read_text()
    # GitHub Pages serves it for any missing page: its links start at the root.
    prefix = urllib.parse.urlparse(site).path
    assert f'href="{prefix}_static/' in missing and "Page not found" in missing


@pytest.mark.book
def test_every_page_has_a_description_tags_favicon_and_footer(built):
    site = config()["html"]["baseurl"]
    for page in pages(built):
        text = page.read_text()
        where = page.relative_to(built)
        description = re.search(r'<meta name="description" content="([^"]+)"', text)
        assert description and len(description.group(1).split()) >= 5, where
        for tag in ("og:title", "og:description", "og:image"):
            assert f'<meta property="{tag}" content="' in text, (where, tag)
        assert f'<meta property="og:url" content="{site}{where}"' in text, where
        assert f'<link rel="canonical" href="{site}{where}"' in text, where
        assert '<link rel="icon" href="../_static/favicon.png"' in text, where
        assert "MIT License" in text and "Cite this book" in text, where
        assert "LeCun" in text and "Burges" in text, where


@pytest.mark.book
def test_the_introduction_says_the_book_s_title_once(built):
    title = config()["title"]
    text = (built / "book" / "intro.html").read_text()
    assert re.search(r"<title>(.*?)</title>", text).group(1) == title
    step = re.search(r"<title>(.*?)</title>", (built / "book/step1.html").read_text())
    assert step.group(1).endswith(f" &#8212; {title}")


@pytest.mark.book
def test_each_notebook_download_is_the_chapter_s_colab_twin(built):
    """A page's ".ipynb" download: the twin, never myst-nb's export, whose
    Markdown keeps the {glue:text} roles raw."""
    offered = [p for p in pages(built) if "download-notebook-button" in p.read_text()]
    assert offered, "no page offers its notebook"
    for page in offered:
        download = built / "_sources" / "book" / f"{page.stem}.ipynb"
        assert download.read_text() == (ROOT / "book" / download.name).read_text()
    for path in (built / "_sources").rglob("*.ipynb"):  # roles in show cells run
        cells = json.loads(path.read_text())["cells"]
        raw = [c for c in cells if c["cell_type"] == "markdown"
               and "{glue" in "".join(c["source"])]
        assert not raw, f"{path}: {raw[0]['source']}"
