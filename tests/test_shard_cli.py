"""``restorekit restore`` split over processes: torchrun (gloo, CPU) and ``--shard K/N`` give the same
bytes as one process, every input is restored once, a killed shard's rerun finishes the job, and
the JSON report has the right counts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from restorekit.archs import nafnet
from restorekit.cli import main
from restorekit.loading import save_safetensors
from restorekit.model import build_model

SIZES = [(12, 16), (12, 16), (16, 12), (12, 16), (8, 8), (12, 16), (12, 16), (16, 12), (12, 16)]


@pytest.fixture
def tiny_nafnet(tmp_path: Path) -> Path:
    """A small random NAFNet: its layer norm rounds differently at batch size 1, so batches matter."""
    config = nafnet.Config(width=8, enc_blk_nums=(1,), middle_blk_num=1, dec_blk_nums=(1,))
    return save_safetensors(build_model("nafnet", config), tmp_path / "weights" / "tiny-nafnet.safetensors")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Nine small images of three sizes (batches form per size) and one corrupt file."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        PILImage.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"p{i:02d}.png")
    (folder / "p04b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


def _restore(photos: Path, out: Path, weights: Path, *extra: str) -> int:
    return main(["restore", str(photos), "-o", str(out), "--weights", str(weights), "--batch-size", "2",
                 "--threads", "1", "--quiet", *extra])


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", RESTOREKIT_RETAIN_MEMORY="0")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path: Path, photos: Path, tiny_nafnet: Path) -> None:
    assert _restore(photos, tmp_path / "one", tiny_nafnet, "--report", str(tmp_path / "one.json")) == 1  # corrupt file
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "restorekit", "restore", str(photos), "-o", str(tmp_path / "two"), "--weights", str(tiny_nafnet),
               "--batch-size", "2", "--quiet", "--report", str(tmp_path / "two.json")]
    done = subprocess.run(command, check=False, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0, done.stderr  # the corrupt file's shard exits 1, so torchrun reports a failure
    assert "report" in done.stdout and "done 9, failed 1" in done.stdout, done.stdout + done.stderr
    one, two = _digests(tmp_path / "one"), _digests(tmp_path / "two")
    assert len(one) == 9 and one == two
    merged = json.loads((tmp_path / "two.json").read_text())
    single = json.loads((tmp_path / "one.json").read_text())
    assert merged["complete"] and merged["shards"] == 2 and single["shards"] == 1
    assert [(i["input"], i["status"]) for i in merged["items"]] == [(i["input"], i["status"]) for i in single["items"]]
    assert {s["launcher"] for s in merged["per_shard"]} == {"torchrun"}
    assert sorted(s["done"] + s["failed"] for s in merged["per_shard"]) == [4, 6]  # units of 2 dealt round robin


def test_shards_cover_each_input_once_and_merge(tmp_path: Path, photos: Path, tiny_nafnet: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _restore(photos, tmp_path / "one", tiny_nafnet)
    report = tmp_path / "reports" / "run.json"
    codes = [_restore(photos, tmp_path / "three", tiny_nafnet, "--shard", f"{k}/3", "--report", str(report))
             for k in (2, 0, 1)]
    out = capsys.readouterr().out
    assert codes.count(1) == 1  # only the shard holding the corrupt file failed
    assert _digests(tmp_path / "three") == _digests(tmp_path / "one")
    shard_items = [json.loads((report.parent / f"run.rank{k}.json").read_text())["items"] for k in range(3)]
    indices = sorted(item["index"] for items in shard_items for item in items)
    assert indices == list(range(10))  # every input of the sorted list once, in one shard
    merged = json.loads(report.read_text())  # the last shard to finish merged
    assert f"report {report}: 3 shards, done 9, failed 1, skipped 0" in out
    assert merged["totals"]["done"] == 9 and merged["totals"]["failed"] == 1
    bad = [item for item in merged["items"] if item["status"] == "failed"]
    assert [item["input"] for item in bad] == [str(photos / "p04b.png")] and bad[0]["bytes"] == 24
    assert all(item["width"] and item["seconds"] > 0 for item in merged["items"] if item["status"] == "done")
    # the verb merges too, and says what it merged
    assert main(["report", "merge", str(tmp_path / "again.json"),
                 *[str(report.parent / f"run.rank{k}.json") for k in range(3)]]) == 1
    assert json.loads((tmp_path / "again.json").read_text())["items"] == merged["items"]


KILL_AFTER_THIRD_FORWARD = """
import os, sys
from restorekit.inference import runner
calls = 0
forward = runner.TorchBackend.__call__
def dying(self, x):
    global calls
    calls += 1
    if calls == 3:
        os._exit(137)  # like SIGKILL: no cleanup, no report
    return forward(self, x)
runner.TorchBackend.__call__ = dying
from restorekit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_shard_is_finished_by_its_rerun(tmp_path: Path, photos: Path, tiny_nafnet: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _restore(photos, tmp_path / "one", tiny_nafnet, "--batch-size", "1")
    out, report = tmp_path / "out", tmp_path / "run.json"
    args = ["restore", str(photos), "-o", str(out), "--weights", str(tiny_nafnet), "--quiet", "--threads", "1",
            "--io-threads", "0", "--report", str(report)]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_THIRD_FORWARD, *args, "--shard", "1/2"],
                            check=False, env=_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr
    # shard 1 holds inputs 1, 3, 5, 7, 9 of the sorted list; #5 is the corrupt file (no forward pass)
    assert sorted(p.name for p in out.glob("*.png")) == ["p01.png", "p03.png"]
    assert not (tmp_path / "run.rank1.json").exists()
    assert main([*args, "--shard", "0/2"]) == 0  # shard 1 has no report yet: nothing merged
    assert not report.exists()
    assert main([*args, "--shard", "1/2"]) == 1  # the corrupt file is in shard 1
    summary = capsys.readouterr().out
    assert "shard 1/2: done 2, failed 1, skipped 2" in summary and "resumed: 2 outputs were already there" in summary
    assert _digests(out) == _digests(tmp_path / "one")
    merged = json.loads(report.read_text())
    assert merged["complete"] and merged["totals"]["resumed"]
    assert (merged["totals"]["done"], merged["totals"]["skipped"], merged["totals"]["failed"]) == (7, 2, 1)
