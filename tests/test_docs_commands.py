"""Every command in README.md and docs/ runs as written on a fresh offline install, or says why not.

The commands are the lines of the fenced ``bash`` blocks (a ``\\`` continuation or a heredoc is one
command). Each runs in its own temporary folder, as a reader would run it:

- offline and fresh: ``RESTOREKIT_OFFLINE=1``, no ``RESTOREKIT_WEIGHTS``, an empty cache and home, so
  only the package's embedded weights exist;
- beside the repository's ``src/`` and ``configs/`` (linked), so repository paths work;
- with small stand-ins for the files the docs assume the reader has (:data:`READER_FILES`).

A command that cannot work that way ends with a marker comment (the convention README.md's Tests
section documents), and is not run:

- ``# needs download``: weights or packages from the network;
- ``# needs GPU``;
- ``# needs data``: datasets not shipped with the package (DIV2K, SIDD, ``../shared/data``).

A ``restorekit VERB`` line marked ``needs download``/``needs GPU`` must have an unmarked line of the
same verb in its block: the offline alternative. Commands that are unmarked but not run here are
listed in :data:`NOT_RUN` with the reason. Every run is a fresh process (a torch import, often a
model): seconds each, so they all carry the ``slow`` marker.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "src/restorekit/samples/README.md"]
SHELL_LANGUAGES = {"bash", "sh", "shell"}
MARKERS = {"download", "gpu", "data"}
MARKER = re.compile(r"\s#\s*needs\s+(\w+)", re.IGNORECASE)
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")

# unmarked commands this test does not run: pattern (matched at the start) -> why
NOT_RUN: dict[str, str] = {
    r"python3 -m venv |\. \.venv/bin/activate": "sets up the virtualenv these tests already run in "
                                                "(.ci/run runs the README's install block in a fresh one)",
    r"pip install ": "installs packages; .ci/run runs the README's install lines in a fresh virtualenv",
    r"bash scripts/install_browser\.sh$": "installs Chromium with apt-get (root and a package mirror); .ci/run runs it",
    r"python -m pytest": "the test suite itself",
    r"restorekit ui\b": "serves until stopped; tests/test_ui.py starts the same server on a free port and uses it",
}


@dataclass(frozen=True)
class DocCommand:
    """One command of a fenced shell block."""

    file: Path
    line: int  # 1-based line of the command's first line in the file
    block: int  # index of its block in the file
    text: str
    marker: str | None  # "download", "gpu", "data" or None

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}"

    @property
    def verb(self) -> str | None:
        words = self.text.split()
        return words[1] if len(words) > 1 and words[0] == "restorekit" else None


def _marker(line: str) -> str | None:
    match = MARKER.search(line)
    return match.group(1).lower() if match else None


def split_commands(file: Path, block: int, first_line: int, body: str) -> list[DocCommand]:
    """The commands of one block: comment-only and blank lines dropped, continuations and heredocs joined."""
    commands: list[DocCommand] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = [line]
        while text[-1].rstrip().endswith("\\") and i < len(lines):
            text.append(lines[i])
            i += 1
        heredoc = HEREDOC.search(text[0])
        if heredoc is not None:
            while i < len(lines):
                text.append(lines[i])
                i += 1
                if lines[i - 1].strip() == heredoc.group(1):
                    break
        commands.append(DocCommand(file, first_line + start, block, "\n".join(text), _marker(text[0])))
    return commands


def doc_blocks() -> list[tuple[Path, int, str, int, str]]:
    """(file, block index, language, first body line, body) of every fenced block."""
    found = []
    for file in DOC_FILES:
        text = file.read_text(encoding="utf-8")
        for index, match in enumerate(FENCE.finditer(text)):
            first_line = text.count("\n", 0, match.start(2)) + 1
            found.append((file, index, match.group(1).lower(), first_line, match.group(2)))
    return found


def doc_commands() -> list[DocCommand]:
    commands: list[DocCommand] = []
    for file, index, language, first_line, body in doc_blocks():
        if language in SHELL_LANGUAGES:
            commands += split_commands(file, index, first_line, body)
    return commands


def _reason(table: dict[str, str], command: DocCommand) -> str | None:
    return next((why for pattern, why in table.items() if re.match(pattern, command.text)), None)


COMMANDS = doc_commands()
RUNNABLE = [c for c in COMMANDS if c.marker is None and _reason(NOT_RUN, c) is None]


# --------------------------------------------------------------------------------------------------
# The reader's files: small stand-ins for what the docs assume you have
# --------------------------------------------------------------------------------------------------


def _photo(path: Path, width: int, height: int, seed: int) -> None:
    """A crop of the package's sample photo (a real photo: the models see what they were made for)."""
    sample = Image.open(REPO / "src/restorekit/samples/astronaut_noisy25.png").convert("RGB")
    rng = np.random.default_rng(seed)
    left, top = (int(v) for v in rng.integers(0, 256 - max(width, height), size=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sample.crop((left, top, left + width, top + height)).save(path)


def _tiny_denoiser() -> torch.nn.Module:
    from restorekit.archs import nafnet
    from restorekit.model import build_model

    config = nafnet.Config(width=8, enc_blk_nums=(1,), middle_blk_num=1, dec_blk_nums=(1,))
    return build_model("nafnet", config).eval()


def make_reader_files(folder: Path) -> None:
    """Create :data:`READER_FILES` in ``folder``."""
    from restorekit.loading import save_safetensors

    for i, name in enumerate(("photo.jpg", "photo.png", "in.png", "noisy.png")):
        _photo(folder / name, 64, 48, i)
    _photo(folder / "shots" / "a.png", 40, 32, 10)
    _photo(folder / "shots" / "trip" / "b.png", 32, 40, 11)
    _photo(folder / "scans" / "page1.tif", 36, 30, 12)
    for i, name in enumerate(("baby", "bird")):  # 48 px: a multiple of 2, 3 and 4
        _photo(folder / "Set5" / "HR" / f"{name}.png", 48, 48, 20 + i)
        hr = Image.open(folder / "Set5" / "HR" / f"{name}.png")
        lr = folder / "Set5" / "LR_bicubic" / "X4" / f"{name}x4.png"
        lr.parent.mkdir(parents=True, exist_ok=True)
        hr.resize((12, 12), Image.Resampling.BICUBIC).save(lr)
        _photo(folder / "CBSD68" / f"{100 + i}.png", 40, 40, 30 + i)
    torch.manual_seed(0)
    model = _tiny_denoiser()
    save_safetensors(model, folder / "my.safetensors")
    save_safetensors(model, folder / "my-denoiser.safetensors")
    torch.save(model.net.state_dict(), folder / "my_weights.pth")


READER_FILES = ("photo.jpg", "photo.png", "in.png", "noisy.png", "shots/", "scans/*.tif", "Set5/HR",
                "Set5/LR_bicubic/X4", "CBSD68/", "my.safetensors", "my-denoiser.safetensors", "my_weights.pth")


@pytest.fixture(scope="module")
def reader_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reader")
    make_reader_files(folder)
    return folder


def offline_env(home: Path) -> dict[str, str]:
    """A fresh offline install: embedded weights only, nothing cached, no downloads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTOREKIT_")}
    env.update({
        "RESTOREKIT_OFFLINE": "1",
        "RESTOREKIT_CACHE": str(home / ".cache" / "restorekit"),
        "HOME": str(home),
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_the_docs_have_commands_and_every_marker_is_known() -> None:
    assert len(RUNNABLE) >= 10, "the extraction found almost no commands: is the fence pattern still right?"
    for command in COMMANDS:
        for line in command.text.splitlines():
            match = MARKER.search(line)
            if match is not None:
                assert match.group(1).lower() in MARKERS, (
                    f"{command.id}: unknown marker '# needs {match.group(1)}' (use: download, GPU, data)")


def test_commands_are_in_bash_blocks() -> None:
    """A command in an unlabelled block would escape this test."""
    for file, _index, language, first_line, body in doc_blocks():
        if language in SHELL_LANGUAGES:
            continue
        for offset, line in enumerate(body.splitlines()):
            assert not re.match(r"(restorekit|torchrun|pip) ", line), (
                f"{file.relative_to(REPO)}:{first_line + offset}: a command in a ```{language or ''} block; "
                "use ```bash so tests/test_docs_commands.py runs it")


def test_marked_commands_have_an_offline_alternative_beside_them() -> None:
    for command in COMMANDS:
        if command.marker not in ("download", "gpu") or command.verb is None:
            continue
        neighbours = [c for c in COMMANDS if c.file == command.file and c.block == command.block]
        assert any(c.verb == command.verb and c.marker is None for c in neighbours), (
            f"{command.id}: marked 'needs {command.marker}' but its block has no unmarked "
            f"`restorekit {command.verb}` line to run instead")


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, id=c.id, marks=[pytest.mark.slow]) for c in RUNNABLE],
)
def test_command_runs_offline_as_written(command: DocCommand, reader_files: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(reader_files, work)
    for name in ("src", "configs", "tests"):  # repository paths in the docs (a checkout: quick start, fuzz corpus)
        (work / name).symlink_to(REPO / name)
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", command.text], cwd=work, env=offline_env(tmp_path),
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, (
        f"{command.id}: `{command.text}` failed ({result.returncode}) on a fresh offline install:\n"
        f"{result.stderr[-3000:]}\nMark it `# needs download|GPU|data` (with an offline alternative) or fix it.")
    assert "Traceback" not in result.stderr
