"""Sharding arithmetic, placement from launcher variables, thread split, the bounded reader/writer,
batched restores and the JSON report's merge: the pieces of ``restorekit restore`` at scale."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from restorekit.archs import bicubic_pp, nafnet
from restorekit.batch import report as reports
from restorekit.batch.prefetch import BoundedWriter, ordered_map
from restorekit.batch.shard import (
    Placement,
    Shard,
    device_for,
    parse_shard,
    placement_from_env,
    shard_units,
    thread_count,
)
from restorekit.errors import RestorekitError
from restorekit.imageio import Image
from restorekit.inference import RestoreOptions, TorchBackend, restore_image
from restorekit.inference.pipeline import batch_capacity, restore_batch
from restorekit.model import build_model


@pytest.mark.parametrize("total", [0, 1, 7, 24, 101])
@pytest.mark.parametrize("unit", [1, 3, 8])
@pytest.mark.parametrize("count", [1, 2, 5])
def test_shards_cover_every_input_exactly_once(total: int, unit: int, count: int) -> None:
    taken = [i for k in range(count) for span in shard_units(total, unit, Shard(k, count)) for i in span]
    assert sorted(taken) == list(range(total))
    for k in range(count):
        spans = shard_units(total, unit, Shard(k, count))
        assert all(span.start % unit == 0 and len(span) <= unit for span in spans)  # fixed cuts of the whole list


def test_units_are_dealt_round_robin() -> None:
    assert [list(s) for s in shard_units(10, 2, Shard(1, 3))] == [[2, 3], [8, 9]]
    sizes = [sum(map(len, shard_units(1000, 8, Shard(k, 3)))) for k in range(3)]
    assert max(sizes) - min(sizes) <= 8  # balanced to within one unit


def test_parse_shard() -> None:
    assert parse_shard("2/5") == Shard(2, 5) and parse_shard(" 0 / 1 ") == Shard(0, 1)
    for bad in ("5/5", "1", "-1/3", "a/b", "1/0"):
        with pytest.raises(RestorekitError, match="K/N|0 <= K < N"):
            parse_shard(bad)


def test_placement_from_launcher_variables() -> None:
    assert placement_from_env(None, {}) == Placement()
    assert placement_from_env(Shard(3, 4), {}) == Placement(Shard(3, 4), 0, 1, "shard")
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert placement_from_env(None, env) == Placement(Shard(5, 8), 1, 4, "torchrun")
    # a Slurm array task (2 of 3) running torchrun with 8 processes: 24 shards in all
    assert placement_from_env(Shard(2, 3), env) == Placement(Shard(21, 24), 1, 4, "torchrun+shard")
    with pytest.raises(RestorekitError, match="RANK"):
        placement_from_env(None, {"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(RestorekitError, match="WORLD_SIZE"):
        placement_from_env(None, {"WORLD_SIZE": "two"})


def test_threads_are_shared_between_local_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("restorekit.batch.shard.cpu_count", lambda: 16)
    four_local = Placement(Shard(1, 4), 1, 4, "torchrun")
    assert thread_count(four_local, None, {}) == 4
    assert thread_count(Placement(Shard(0, 32), 0, 32, "torchrun"), None, {}) == 1
    assert thread_count(four_local, None, {"OMP_NUM_THREADS": "3"}) == 3  # the user's choice wins
    assert thread_count(four_local, 2, {"OMP_NUM_THREADS": "3"}) == 2
    assert thread_count(Placement(), None, {}) is None  # one process: torch's own default


def test_device_spreads_over_gpus_only_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    local = Placement(Shard(5, 8), 5, 8, "torchrun")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert device_for("auto", local) == "cuda:1" and device_for("cuda", local) == "cuda:1"
    assert device_for("cuda:3", local) == "cuda:3" and device_for("cpu", local) == "cpu"
    assert device_for("auto", Placement(Shard(1, 2), 0, 1, "shard")) == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for("auto", local) == "auto"


def test_reader_keeps_order_and_a_bounded_look_ahead() -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()
    consumed: list[int] = []

    def items():  # a generator: ordered_map must not list it
        for i in range(40):
            consumed.append(i)
            yield i

    def slow_square(i: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.002 * (i % 3))  # finish out of order
        with lock:
            in_flight -= 1
        if i == 7:
            raise ValueError("bad item")
        return i * i

    results = []
    for result in ordered_map(slow_square, items(), threads=3, ahead=4):
        assert len(consumed) - (len(results) + 1) <= 4  # at most ``ahead`` in flight beyond the one handed over
        results.append(result)
    assert [r.item for r in results] == list(range(40))
    assert [r.value for r in results if r.item != 7] == [i * i for i in range(40) if i != 7]
    assert isinstance(results[7].error, ValueError) and results[7].value is None
    assert most <= 3
    inline = list(ordered_map(lambda i: i + 1, range(5), threads=0, ahead=1))
    assert [r.value for r in inline] == [1, 2, 3, 4, 5]


def test_writer_blocks_when_its_queue_is_full() -> None:
    release = threading.Event()
    done: list[int] = []
    writer = BoundedWriter(lambda result: done.append(result.item), threads=1, pending=2)
    writer.submit(lambda _i: release.wait(5), 0)
    writer.submit(lambda _i: None, 1)
    third = threading.Thread(target=writer.submit, args=(lambda _i: None, 2))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # two unfinished jobs: the third waits for a slot
    release.set()
    third.join(5)
    writer.close()
    assert sorted(done) == [0, 1, 2]


def _images(count: int, shape: tuple[int, ...], dtype: type = np.uint8, alpha: bool = False) -> list[Image]:
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    out = []
    for _ in range(count):
        pixels = (np.random.rand(*shape) * top).astype(dtype)
        plane = (np.random.rand(*shape[:2]) * top).astype(dtype) if alpha else None
        out.append(Image(pixels, plane, b"icc", None, "png"))
    return out


class _Elementwise:
    """A backend whose every output pixel is computed on its own (x2 nearest, then affine): the same
    bits in any batch, so batched and one-at-a-time restores must agree exactly."""

    scale, alignment, in_channels, device = 2, 1, 3, torch.device("cpu")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1) * 0.9 + 0.07


@pytest.mark.parametrize(("shape", "dtype", "alpha"), [((9, 11, 3), np.uint8, False), ((8, 6, 1), np.uint16, False),
                                                       ((7, 5, 3), np.uint8, True), ((6, 6, 3), np.float32, False)])
def test_batched_restore_equals_one_at_a_time(shape: tuple[int, ...], dtype: type, alpha: bool) -> None:
    images = _images(5, shape, dtype, alpha)
    batched = restore_batch(images, _Elementwise())
    for image, out in zip(images, batched):
        alone = restore_image(image, _Elementwise())
        np.testing.assert_array_equal(out.pixels, alone.pixels)
        assert out.pixels.dtype == dtype and out.pixels.shape == (shape[0] * 2, shape[1] * 2, shape[2])
        if alpha:
            np.testing.assert_array_equal(out.alpha, alone.alpha)
        assert out.icc_profile == b"icc" and out.format == "png"


def test_batched_network_stays_within_rounding() -> None:
    # convolution kernels may pick another code path for another batch size: float rounding only
    backend = TorchBackend(build_model("bicubic_pp", bicubic_pp.Config(channels=8)).eval())
    images = _images(4, (12, 10, 3))
    for image, out in zip(images, restore_batch(images, backend)):
        difference = np.abs(out.pixels.astype(int) - restore_image(image, backend).pixels.astype(int))
        assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


def test_batches_respect_memory_and_size() -> None:
    backend = TorchBackend(build_model("nafnet", nafnet.Config(width=8, enc_blk_nums=(1,), middle_blk_num=1,
                                                               dec_blk_nums=(1,))).eval())
    assert batch_capacity(backend, RestoreOptions(tile=64), 32, 32) == 4  # an explicit tile caps pixels per pass
    assert batch_capacity(backend, RestoreOptions(tile=64), 65, 10) == 0  # needs tiles: not batched
    assert batch_capacity(backend, RestoreOptions(tile=0), 4000, 3000) > 1000  # no tiling: no cap
    assert batch_capacity(backend, RestoreOptions(), 64, 64) > 1
    mixed = _images(1, (8, 8, 3)) + _images(1, (8, 9, 3))
    with pytest.raises(RestorekitError, match="batch_key"):
        restore_batch(mixed, backend)


def _shard_file(path: Path, shard: int, shards: int, items: list[reports.Outcome], inputs: int) -> Path:
    report = reports.ShardReport(shard, shards, inputs, 2, "f00d", seconds=1.0 + shard, outcomes=items)
    return reports.write_json(report.to_json(), reports.shard_path(path, shard))


def test_report_merge_checks_shards_and_counts(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    first = _shard_file(target, 0, 2, [reports.Outcome("a.png", "o/a.png", "done", None, 0, 10, 4, 3, 0.5),
                                       reports.Outcome("b.png", "o/b.png", "failed", "cannot decode", 1, 5)], 3)
    second = _shard_file(target, 1, 2, [reports.Outcome("c.png", "o/c.png", "skipped", "output exists", 2)], 3)
    assert first.name == "run.rank0.json"
    merged = reports.merge_files(target, [second, first])
    again = json.loads(target.read_text())
    assert again == merged and merged["complete"]
    assert [item["input"] for item in merged["items"]] == ["a.png", "b.png", "c.png"]
    totals = merged["totals"]
    assert (totals["done"], totals["failed"], totals["skipped"], totals["unreported"]) == (1, 1, 1, 0)
    assert totals["resumed"] and merged["seconds"] == 2.0 and totals["images_per_second"] == 0.5
    with pytest.raises(RestorekitError, match=r"shard\(s\) 1 of 2 missing"):
        reports.merge_files(target, [first])
    with pytest.raises(RestorekitError, match="also in"):
        reports.merge_files(target, [first, first])
    other = _shard_file(tmp_path / "other.json", 1, 2, [], 4)
    with pytest.raises(RestorekitError, match="different runs"):
        reports.merge_files(target, [first, other])
    overlap = _shard_file(tmp_path / "overlap.json", 1, 2, [reports.Outcome("a.png", None, "done", None, 0)], 3)
    with pytest.raises(RestorekitError, match="input #0"):
        reports.merge_files(target, [first, overlap])
    short = _shard_file(tmp_path / "short.json", 1, 2, [], 3)
    assert reports.merge_files(tmp_path / "short-merged.json", [first, short])["totals"]["unreported"] == 1
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(RestorekitError, match="junk.json: not a readable JSON"):
        reports.merge_files(target, [first, tmp_path / "junk.json"])
