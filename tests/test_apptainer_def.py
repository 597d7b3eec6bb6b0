"""The container recipes (apptainer.def -> train.sif, containers/serve.def -> serve.sif) hold together, checked
without Apptainer: they parse (spython), use only real sections, copy files that exist, have shell bodies that
bash accepts, and install through containers/install.sh, the script CI runs too."""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from spython.main.parse.parsers import SingularityParser

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DEF = ROOT / "apptainer.def"
SERVE_DEF = ROOT / "containers" / "serve.def"
RECIPES = [TRAIN_DEF, SERVE_DEF]
INSTALL_SCRIPT = "containers/install.sh"

APPTAINER_SECTIONS = {
    "setup", "files", "environment", "post", "runscript", "startscript", "test", "labels", "help",
    "apprun", "appinstall", "appenv", "applabels", "appfiles", "apphelp", "apptest",
}
SHELL_SECTIONS = {"setup", "environment", "post", "runscript", "startscript", "test",
                  "apprun", "appinstall", "appenv", "apptest"}


@dataclass
class Section:
    name: str
    argument: str  # the app name of %app* sections
    body: str


def read_header(path: Path) -> dict[str, str]:
    header = {}
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            break
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip().lower()] = value.strip()
    return header


def read_sections(path: Path) -> list[Section]:
    """Apptainer's view: a section starts at a line beginning with %name, and runs to the next one."""
    sections: list[Section] = []
    for line in path.read_text().splitlines():
        match = re.match(r"%(\w+)\s*(.*)$", line)
        if match:
            sections.append(Section(match.group(1).lower(), match.group(2).strip(), ""))
        elif sections:
            sections[-1].body += line + "\n"
    return sections


def section(path: Path, name: str, argument: str = "") -> Section:
    found = [s for s in read_sections(path) if s.name == name and s.argument == argument]
    assert len(found) == 1, f"{path.name}: expected one %{name} {argument}".strip()
    return found[0]


def files_entries(path: Path) -> list[tuple[str, str]]:
    entries = []
    for line in section(path, "files").body.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            source, *destination = line.split()
            entries.append((source, destination[0] if destination else source))
    return entries


def spython_recipe(path: Path):
    recipes = SingularityParser(str(path)).recipe
    return recipes[list(recipes)[-1]]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_with_spython(path):
    recipe = spython_recipe(path)
    assert read_header(path)["bootstrap"] == "docker"
    assert recipe.fromHeader and recipe.fromHeader == read_header(path)["from"].lower()
    assert recipe.files and recipe.install and recipe.cmd and recipe.labels and recipe.test
    assert any(INSTALL_SCRIPT in line for line in recipe.install)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_only_apptainer_sections(path):
    names = [s.name for s in read_sections(path)]
    assert set(names) <= APPTAINER_SECTIONS, set(names) - APPTAINER_SECTIONS
    for required in ("files", "post", "environment", "runscript", "test", "labels", "help"):
        assert names.count(required) == 1, required
    for app_section in (s for s in read_sections(path) if s.name.startswith("app")):
        assert re.fullmatch(r"[a-z][a-z0-9_-]*", app_section.argument), app_section


def test_train_image_has_apps():
    apps = {s.argument: s.body for s in read_sections(TRAIN_DEF) if s.name == "apprun"}
    assert set(apps) == {"train", "export", "bench"}
    for app, body in apps.items():
        assert f'exec tagsmith {app} "$@"' in body
    assert "exec tagsmith" in section(TRAIN_DEF, "runscript").body


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_files_sources_exist(path):
    """%files sources are relative to the directory `apptainer build` runs in: the project root."""
    entries = files_entries(path)
    assert entries
    for source, destination in entries:
        assert (ROOT / source).exists(), f"{path.name}: %files source {source} is not in the repo"
        assert destination.startswith("/"), destination
    assert (INSTALL_SCRIPT, f"/opt/tagsmith/{INSTALL_SCRIPT}") in entries
    assert ("pyproject.toml", "/opt/tagsmith/pyproject.toml") in entries


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shell_sections_pass_bash_n(path, tmp_path):
    checked = 0
    for number, part in enumerate(read_sections(path)):
        if part.name not in SHELL_SECTIONS:
            continue
        script = tmp_path / f"{number}-{part.name}.sh"
        script.write_text(part.body)
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name} %{part.name} {part.argument}: {result.stderr}"
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("path, extras", [(TRAIN_DEF, "train,export"), (SERVE_DEF, "serve")],
                         ids=["apptainer.def", "serve.def"])
def test_post_runs_the_install_script(path, extras):
    post = section(path, "post").body
    calls = [line for line in post.splitlines() if f"/opt/tagsmith/{INSTALL_SCRIPT}" in line]
    assert len(calls) == 1, post
    assert f"TAGSMITH_EXTRAS={extras}" in calls[0] and "TAGSMITH_PYTHON=" in calls[0]
    assert "pip install" not in post, "install through containers/install.sh only"


def test_ci_installs_with_the_same_script():
    """CI (.ci/run -> make test) installs the project through the script the images run."""
    ci_files = [p for p in (ROOT / ".ci" / "run", ROOT / "Makefile") if p.is_file()]
    if not ci_files:
        pytest.skip("no .ci/run or Makefile yet")
    assert any(INSTALL_SCRIPT in p.read_text() for p in ci_files), [str(p) for p in ci_files]


def _torch_requirement() -> Requirement:
    train_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    return next(Requirement(r) for r in train_extra if Requirement(r).name == "torch")


def test_image_torch_is_the_release_the_suite_runs_on():
    """train.sif installs, through install.sh, exactly the torch release `make install` (CI) pins and this suite
    runs on; pyproject's range admits that release and no other minor release."""
    post = section(TRAIN_DEF, "post").body
    pinned = re.search(r"TAGSMITH_TORCH=torch==(\S+)", post)
    assert pinned, "apptainer.def must pin its torch through TAGSMITH_TORCH=torch==X"
    image_torch = Version(pinned.group(1))
    makefile_pin = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_pin and Version(makefile_pin.group(1)) == image_torch, (makefile_pin, image_torch)
    import torch

    assert Version(torch.__version__.split("+")[0]) == image_torch, (torch.__version__, image_torch)
    requirement = _torch_requirement()
    assert image_torch in requirement.specifier
    for untested in (f"{image_torch.major}.{image_torch.minor + 1}.0", f"{image_torch.major}.{image_torch.minor - 1}.0"):
        assert Version(untested) not in requirement.specifier, (untested, str(requirement))
    assert not read_header(TRAIN_DEF)["from"].startswith("pytorch/"), "the base image's own torch would be another release"
    assert re.search(r"torch\.__version__\.startswith\(\"" + re.escape(str(image_torch)), section(TRAIN_DEF, "test").body)


def test_install_script_installs_the_requested_torch_first(tmp_path):
    """TAGSMITH_TORCH is installed alone, before the project, only when the environment has no torch: a fake
    python records the pip calls."""
    log = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
if [[ "$1" == "-" ]]; then [[ -f {tmp_path}/installed ]] && echo 2.13.0; cat >/dev/null; exit 0; fi
if [[ "$*" == *"install torch=="* ]]; then touch {tmp_path}/installed; fi
exit 0
""")
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "TAGSMITH_PYTHON": str(fake), "TAGSMITH_TORCH": "torch==2.13.0",
           "TAGSMITH_EXTRAS": "train,export", "TAGSMITH_SRC": str(ROOT)}
    result = subprocess.run(["bash", str(ROOT / INSTALL_SCRIPT)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = [line for line in log.read_text().splitlines() if line != "-"]
    pip_calls = [line for line in calls if line.startswith("-m pip")]
    assert pip_calls[0] == "-m pip install torch==2.13.0", calls
    assert "--constraint" in pip_calls[1] and "[train,export]" in pip_calls[1], calls
    # torch already there: never reinstalled, whatever TAGSMITH_TORCH says
    log.unlink()
    result = subprocess.run(["bash", str(ROOT / INSTALL_SCRIPT)], env={**env, "TAGSMITH_TORCH": "torch==9.9"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not any("install torch==" in line for line in log.read_text().splitlines())


def test_environment_uses_a_bindable_cache_and_honours_offline():
    environment = section(TRAIN_DEF, "environment").body
    assert re.search(r"HF_HOME=\"\$\{HF_HOME:-\$TAGSMITH_CACHE/", environment)
    assert re.search(r"TAGSMITH_CACHE=\"\$\{TAGSMITH_CACHE:-/scratch", environment)
    assert re.search(r"HF_HUB_OFFLINE=\"\$\{HF_HUB_OFFLINE:-", environment)


def test_serve_image_is_torch_free():
    sources = {source.split("/")[0] for source, _ in files_entries(SERVE_DEF)}
    assert not sources & {"training", "export", "bench"}, sources
    assert "torch" in section(SERVE_DEF, "test").body  # %test fails when torch is importable
    assert not read_header(SERVE_DEF)["from"].startswith("pytorch/")


def test_install_script_keeps_torch_and_guards_serving():
    script = (ROOT / INSTALL_SCRIPT).read_text()
    assert "TAGSMITH_PYTHON" in script and "TAGSMITH_EXTRAS" in script
    assert "--constraint" in script and "torch==" in script
    assert subprocess.run(["bash", "-n", str(ROOT / INSTALL_SCRIPT)]).returncode == 0
