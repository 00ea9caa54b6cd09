"""Fuzz corpus of weights files: valid models in every container restorekit reads, hostile and damaged
variants of them, and seeded random mutations, each with the outcome loading must give.

Nothing binary is committed: ``generate(folder, n_random, seed)`` writes the corpus at test time
(``tests/test_fuzz_weights.py``) and returns the cases. To write a larger corpus for manual runs:

    python tests/fuzz_weights.py /tmp/weights-corpus --random 2000

Outcomes: ``ok`` (loads, with the expected family, config and output), ``refused`` (a one-line
:class:`~restorekit.errors.RestorekitError` matching ``match``), ``either`` (random damage: one of the
two, never a traceback, a hang or an unbounded allocation).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from fuzz_common import command_line, judge_all, outcome, outcome_problems
from safetensors.torch import save_file

from restorekit.archs import bicubic_pp, hinet, nafnet, rednet, vapsr
from restorekit.loading import save_safetensors
from restorekit.model import RestorationModel, build_model

Outcome = Literal["ok", "refused", "either"]

# One tiny network per family: small enough that the whole corpus loads in seconds.
BASES: dict[str, Any] = {
    "vapsr": vapsr.Config(scale=2, num_feat=8, num_block=1, d_atten=8),
    "bicubic_pp": bicubic_pp.Config(channels=4),
    "rednet": rednet.Config(depth=4, width=8),
    "nafnet": nafnet.Config(width=8, enc_blk_nums=(1,), middle_blk_num=1, dec_blk_nums=(1,)),
    "hinet": hinet.Config(width=8, depth=2, hin_left=0, hin_right=1),
}


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expect: Outcome
    family: str  # the family the file was made from (its reference model for ``ok``)
    match: str = ""  # regex a refusal must match


def reference_models(seed: int = 0) -> dict[str, RestorationModel]:
    """The base model of each family, deterministic for a seed (the expected output of ``ok`` cases)."""
    torch.manual_seed(seed)
    return {family: build_model(family, config).eval() for family, config in BASES.items()}


def _zip_pickle(path: Path, payload: bytes, compress: int = zipfile.ZIP_STORED) -> None:
    """A ``torch.save``-style archive around a hand-written pickle stream."""
    with zipfile.ZipFile(path, "w", compress) as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


class _Evil:
    """Pickles to a call of ``os.system``: loading must refuse it, never run it."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, ("echo restorekit-fuzz-pwned",)


def _metadata(model: RestorationModel, **changes: Any) -> dict[str, str]:
    from restorekit.loading import config_to_json

    meta = {"family": model.family, "config": config_to_json(model.config), "format": "restorekit-1"}
    config = json.loads(meta["config"])
    for key, value in changes.items():
        if key in ("family", "config"):
            meta[key] = value
        else:
            config[key] = value
    if "config" not in changes:
        meta["config"] = json.dumps(config)
    return meta


def _named_cases(folder: Path, models: dict[str, RestorationModel]) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, family: str, expect: Outcome, write: Callable[[Path], None], match: str = "") -> None:
        path = folder / name
        write(path)
        cases.append(Case(name, path, expect, family, match))

    families = list(models)
    for family, model in models.items():
        state = {k: v.detach().clone().contiguous() for k, v in model.net.state_dict().items()}
        # --- every container we read, valid ---
        add(f"{family}-plain.pth", family, "ok", lambda p, s=state: torch.save(s, p))
        add(f"{family}-ema.pth", family, "ok",
            lambda p, s=state: torch.save({"params": {k: v * 0 for k, v in s.items()}, "params_ema": s}, p))
        add(f"{family}-module.pth", family, "ok", lambda p, s=state: torch.save({f"module.{k}": v for k, v in s.items()}, p))
        add(f"{family}-meta.safetensors", family, "ok", lambda p, m=model: save_safetensors(m, p) and None)
        add(f"{family}-bare.safetensors", family, "ok", lambda p, s=state: save_file(s, p))
        add(f"{family}-fp16.pth", family, "ok", lambda p, s=state: torch.save({k: v.half() for k, v in s.items()}, p))

    def state_of(i: int) -> tuple[str, dict[str, torch.Tensor], RestorationModel]:
        family = families[i % len(families)]
        model = models[family]
        return family, {k: v.detach().clone().contiguous() for k, v in model.net.state_dict().items()}, model

    # --- hostile structure ---
    family, state, model = state_of(0)
    cycle: dict[str, Any] = {}
    cycle["params"] = cycle
    add("cycle.pth", family, "refused", lambda p: torch.save(cycle, p), "contain themselves")
    n = 100_000
    add("deep-wrappers.pth", family, "refused",
        lambda p: _zip_pickle(p, b"\x80\x02" + b"}X\x06\x00\x00\x00params" * n + b"}" + b"s" * n + b"."),
        "nest deeper")
    add("deep-list.pth", family, "refused",
        lambda p: _zip_pickle(p, b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."), "expected a dict of tensors")
    add("zip-bomb.pth", family, "refused",
        lambda p: _zip_pickle(p, b"\x80\x02X" + (2**26).to_bytes(4, "little") + b"a" * 2**26 + b".",
                              zipfile.ZIP_DEFLATED), "expand")
    add("evil-zip.pth", family, "refused", lambda p: torch.save({"params": state, "x": _Evil()}, p), "refuses to unpickle")
    add("evil-legacy.pth", family, "refused",
        lambda p: p.write_bytes(pickle.dumps({"x": _Evil()}, protocol=2)), "refuses to unpickle")
    add("list.pth", family, "refused", lambda p: torch.save(list(state.values()), p), "expected a dict")
    add("no-tensors.pth", family, "refused", lambda p: torch.save({"a": 1, "b": "x"}, p), "no state dict")
    add("tensor-top.pth", family, "refused", lambda p: torch.save(torch.zeros(3), p), "expected a dict")

    # --- damaged values and dtypes ---
    for i, (tag, change, match) in enumerate([
        ("nan", lambda t: t.index_put_((torch.tensor([0]),), torch.tensor(float("nan"))), "NaN/Inf"),
        ("inf", lambda t: t.index_put_((torch.tensor([0]),), torch.tensor(float("-inf"))), "NaN/Inf"),
        ("int64", lambda t: t.to(torch.int64), "dtype torch.int64"),
        ("bool", lambda t: t.to(torch.bool), "dtype torch.bool"),
        ("complex", lambda t: t.to(torch.complex64), "dtype torch.complex64"),
        ("uint8", lambda t: t.to(torch.uint8), "dtype torch.uint8"),
    ]):
        family, state, _ = state_of(i)
        key = sorted(state)[len(state) // 2]
        damaged = dict(state)
        damaged[key] = change(damaged[key].clone().view(-1)).view(state[key].shape)
        add(f"{tag}.pth", family, "refused", lambda p, s=damaged: torch.save(s, p), match)
        add(f"{tag}.safetensors", family, "refused", lambda p, s=damaged: save_file(s, p), match)

    # --- malformed state dicts ---
    for i, family in enumerate(families):
        _, state, model = state_of(i)
        first, last = min(state), max(state)
        add(f"{family}-zero-d.pth", family, "refused", lambda p, s=state: torch.save({k: torch.zeros(()) for k in s}, p),
            "not a valid|does not fit|matches no known")
        add(f"{family}-missing-key.pth", family, "refused",
            lambda p, s=state, k=last: torch.save({x: v for x, v in s.items() if x != k}, p),
            "missing|not a valid|matches no known|does not fit")
        add(f"{family}-extra-key.pth", family, "refused",
            lambda p, s=state: torch.save({**s, "extra.weight": torch.zeros(2)}, p), "unexpected|matches no known")
        add(f"{family}-wrong-shape.pth", family, "refused",
            lambda p, s=state, k=first: torch.save({**s, k: torch.zeros(*s[k].shape[:-1], s[k].shape[-1] + 1)}, p),
            "shape mismatch|not a valid|does not fit")
        # zero-size tensors whose other dimensions are huge: no memory, enormous implied network
        add(f"{family}-zero-size-huge.safetensors", family, "refused",
            lambda p, s=state: save_file({k: torch.zeros(0, *([10**6] * max(v.dim() - 1, 1))) for k, v in s.items()}, p),
            "larger than|not a valid|does not fit")
        # --- safetensors metadata that lies ---
        meta_cases: list[tuple[str, dict[str, str], str]] = [
            ("bad-json", _metadata(model, config="{not json"), "not valid JSON"),
            ("list-config", _metadata(model, config="[1, 2]"), "expected a mapping"),
            ("unknown-family", _metadata(model, family="resnet"), "unknown family"),
            ("unknown-key", _metadata(model, frobnicate=3), "unknown key config.frobnicate"),
            ("no-config", {"family": model.family, "format": "restorekit-1"}, "without 'family' or 'config'"),
            ("nested-json", _metadata(model, config="[" * 100_000), "not valid JSON"),
            ("other-family", _metadata(model, family=families[(i + 1) % len(families)]),
             "does not fit|larger than|unknown key|cannot be built|config"),
            ("in-channels-huge", _metadata(model, in_channels=10**9), "larger than"),
            ("in-channels-zero", _metadata(model, in_channels=0), "must be >= 1|must be positive"),
            ("in-channels-bool", _metadata(model, in_channels=True), "expected an integer"),
            ("in-channels-float", _metadata(model, in_channels=3.5), "expected an integer"),
            ("in-channels-string", _metadata(model, in_channels="3"), "expected an integer"),
        ]
        for tag, meta, match in meta_cases:
            add(f"{family}-meta-{tag}.safetensors", family, "refused", lambda p, s=state, m=meta: save_file(s, p, m), match)
    # Each family's own size knobs set far beyond the tensors present (the 228-byte "gigabytes" file).
    for family, knobs in {
        "vapsr": {"num_feat": 4096, "num_block": 200, "d_atten": 4096},
        "nafnet": {"width": 4096, "middle_blk_num": 1000},
        "rednet": {"depth": 10**6},
        "hinet": {"width": 2**20},
        "bicubic_pp": {"channels": 10**5},
    }.items():
        add(f"{family}-meta-huge-tiny-file.safetensors", family, "refused",
            lambda p, m=models[family], k=knobs: save_file({"x": torch.zeros(1)}, p, _metadata(m, **k)), "larger than")
        add(f"{family}-meta-huge.safetensors", family, "refused",
            lambda p, m=models[family], k=knobs: save_file(
                {kk: v.contiguous() for kk, v in m.net.state_dict().items()}, p, _metadata(m, **k)),
            "larger than|does not fit")
    add("vapsr-meta-scale-5.safetensors", "vapsr", "refused",
        lambda p: save_file(dict(models["vapsr"].net.state_dict()), p, _metadata(models["vapsr"], scale=5)),
        "scale must be 2, 3 or 4")
    add("hinet-meta-slope-nan.safetensors", "hinet", "refused",
        lambda p: save_file(dict(models["hinet"].net.state_dict()), p, _metadata(models["hinet"], relu_slope="nan")),
        "finite")

    # --- not weights at all ---
    family = families[0]
    add("empty.pth", family, "refused", lambda p: p.write_bytes(b""), "not a PyTorch checkpoint")
    add("empty.safetensors", family, "refused", lambda p: p.write_bytes(b""), "not a readable safetensors")
    add("png.pth", family, "refused", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "not a PyTorch")
    add("text.safetensors", family, "refused", lambda p: p.write_text("hello"), "not a readable safetensors")
    add("header-huge.safetensors", family, "refused",
        lambda p: p.write_bytes((2**40).to_bytes(8, "little") + b"{}"), "not a readable safetensors")
    add("header-shape-lie.safetensors", family, "refused",
        lambda p: _write_safetensors_header(p, {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4]}}),
        "not a readable safetensors")
    return cases


def _write_safetensors_header(path: Path, header: dict[str, Any], data: bytes = b"\x00" * 4) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def _mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded random damage: truncation, flipped bytes, an overwritten span, or appended junk."""
    kind = rng.choice(["truncate", "flip", "span", "append"])
    if kind == "truncate":
        cut = rng.randrange(0, len(data))
        return f"truncate{cut}", data[:cut]
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return "flip", bytes(buf)
    if kind == "span":
        start = rng.randrange(len(buf))
        end = min(len(buf), start + rng.randint(1, 64))
        buf[start:end] = bytes(rng.randrange(256) for _ in range(end - start))
        return "span", bytes(buf)
    return "append", data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 256)))


def generate(folder: str | Path, n_random: int = 60, seed: int = 0) -> list[Case]:
    """Write the corpus into ``folder``: every named case, then ``n_random`` mutations of valid files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    models = reference_models(seed)
    cases = _named_cases(folder, models)
    valid = [c for c in cases if c.expect == "ok"]
    rng = random.Random(seed)
    for i in range(n_random):
        source = rng.choice(valid)
        kind, data = _mutate(source.path.read_bytes(), rng)
        path = folder / f"random{i:04d}-{kind}-{source.name}"
        path.write_bytes(data)
        cases.append(Case(path.name, path, "either", source.family))
    return cases


SECONDS_PER_CASE = 20  # a hang is reported as a problem instead of stalling the run


def load_case(case: Case) -> tuple[str, Any]:
    """("ok", model), ("refused", RestorekitError) or ("crashed", any other exception) for one file."""
    import restorekit
    from restorekit.errors import RestorekitError

    def read() -> RestorationModel:
        with torch.inference_mode():
            return restorekit.load(case.path)

    return outcome(read, RestorekitError, SECONDS_PER_CASE)


def problems(case: Case, got: str, value: Any, models: dict[str, RestorationModel]) -> list[str]:
    """What is wrong with one outcome (empty when it is the expected one)."""
    def refusal_checks(message: str) -> list[str]:
        found = [] if str(case.path) in message else [f"does not name the file: {message[:200]}"]
        if len(message) > 600:
            found.append(f"not a short line: {message[:200]!r}")
        if "weights_only=False" in message:
            found.append("suggests unsafe loading")
        return found

    found = outcome_problems(case, got, value, refusal_checks)
    if found is not None:
        return found
    reference = models[case.family]
    if value.family != case.family:
        return [f"{case.name}: loaded as {value.family}"]
    if case.expect == "ok":
        if value.config != reference.config:
            return [f"{case.name}: config {value.config} != {reference.config}"]
        probe = torch.rand(1, reference.in_channels, 12, 12, generator=torch.Generator().manual_seed(0))
        tolerance = 1e-2 if "fp16" in case.name else 1e-6
        with torch.inference_mode():
            if not torch.allclose(value(probe), reference(probe), atol=tolerance, rtol=tolerance):
                return [f"{case.name}: output differs from the model that was saved"]
    return []


def run(cases: list[Case], seed: int = 0) -> tuple[dict[str, int], list[str]]:
    """Load every case: (outcome counts, problems)."""
    models = reference_models(seed)
    return judge_all(cases, load_case, lambda case, got, value: problems(case, got, value, models),
                     is_random=lambda case: case.expect == "either")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--random", type=int, default=500, help="number of random mutations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", action="store_true", help="load every file and report outcomes and problems")
    args = parser.parse_args()
    started = time.perf_counter()
    cases = generate(args.folder, args.random, args.seed)
    manifest = [{"file": c.name, "expect": c.expect, "family": c.family, "match": c.match} for c in cases]
    command_line(args.folder, cases, manifest, "files", started, (lambda: run(cases, args.seed)) if args.run else None)


if __name__ == "__main__":
    main()
