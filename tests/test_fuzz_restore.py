"""``restorekit restore`` on a generated corpus of odd, broken and hostile files (tests/fuzz_images.py):
every file ends as expected (restored with the right size, depth, channels, alpha, orientation and
data format; refused with its reason; or skipped), each failure is one line naming the file, no
input changes, no temp file stays, and nothing else appears in the output folder.

Outputs are read back with independent readers (tifffile for TIFF, OpenCV for 16-bit PNG, Pillow
for the rest) and compared with the expected upright pixels through 3x3 block means (the model is
the shipped Bicubic++ x3, whose output is close to a smooth upscale of smooth inputs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_images import Corpus, audit, check_output, make_corpus, output_rules, run_corpus, snapshot


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("fuzz"), seed=0, random_cases=40, mutants=12)


@pytest.mark.slow
def test_every_file_ends_as_expected(corpus: Corpus, tmp_path: Path) -> None:
    before = snapshot(corpus.root)
    code, out, err = run_corpus(corpus, tmp_path / "out")
    result = audit(corpus, tmp_path / "out", code, out, err, before)
    assert result.problems == []
    assert result.counts["restored"] >= 90 and result.counts["refused"] >= 25 and result.counts["skipped"] == 3
    assert f"removed an abandoned temp file: {tmp_path / 'out' / corpus.stale_temp}" in err


@pytest.mark.slow
def test_every_restorable_file_makes_a_valid_tiff(corpus: Corpus, tmp_path: Path) -> None:
    """The same corpus written as TIFF: no input's layout (width, strips, photometric, palette,
    BigTIFF, orientation) may leak into the file, which tifffile must read as the right image."""
    outdir = tmp_path / "tiff"
    code, _, err = run_corpus(corpus, outdir, ["--format", "tiff"])
    assert code == 1 and "Traceback" not in err
    problems = []
    for expect in corpus.expects:
        if expect.outcome != "restored":
            continue
        assert expect.output and expect.upright is not None and expect.in_depth
        channels, depth, keeps_alpha = output_rules("tiff", expect.upright.shape[2], expect.in_depth,
                                                    expect.alpha is not None)
        wrong = check_output(expect, outdir / Path(expect.output).with_suffix(".tif"), channels, depth, keeps_alpha)
        if wrong is not None:
            problems.append(f"{expect.name}: {wrong}")
    assert problems == []
