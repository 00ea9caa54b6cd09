"""Typed configs: every recipe validates; unknown keys, wrong types and bad overrides name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from restorekit.errors import ConfigError
from restorekit.train.config import RunConfig, config_from_dict, load_config, to_dict

REPO = Path(__file__).resolve().parents[1]
RECIPE_DIRS = ("nafnet", "hinet", "rednet", "bicubic_pp", "vapsr")
RECIPES = sorted(p for d in RECIPE_DIRS for p in (REPO / "configs" / d).glob("*.yml"))

MINIMAL = {
    "name": "t",
    "model": {"family": "bicubic_pp", "arch": {"channels": 4}},
    "data": {"train": {"gt": "gt", "lq": "lq"}},
    "train": {"total_steps": 3},
}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_validates_and_round_trips(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config_from_dict(to_dict(config)) == config  # the resolved config saved beside a run reloads equal
    config.arch_config()


def test_recipes_cover_every_family_with_a_laptop_variant() -> None:
    for family in RECIPE_DIRS:
        names = [p.name for p in RECIPES if p.parent.name == family]
        assert any(n.endswith("_laptop.yml") for n in names), family
        assert any(not n.endswith("_laptop.yml") for n in names), family


def test_published_recipe_facts() -> None:
    nafnet = load_config(REPO / "configs/nafnet/sidd_w32.yml")
    assert (nafnet.optim.name, nafnet.optim.betas, nafnet.optim.grad_clip) == ("adamw", (0.9, 0.9), 0.01)
    assert (nafnet.loss.name, nafnet.schedule.name, nafnet.schedule.min_lr) == ("psnr", "cosine", 1e-7)
    hinet = load_config(REPO / "configs/hinet/gopro.yml")
    assert hinet.loss.stage_weights == (0.5, 0.5)
    assert load_config(REPO / "configs/hinet/sidd_1x.yml").loss.name == "l1"
    bpp = load_config(REPO / "configs/bicubic_pp/x3_wide.yml")
    assert (bpp.schedule.name, bpp.schedule.unit, bpp.optim.lr) == ("knee", "epoch", 5e-4)
    assert "jpeg:90" in (bpp.data.train.degradation or "")
    vapsr = load_config(REPO / "configs/vapsr/x2.yml")
    assert (vapsr.ema.decay, vapsr.optim.betas, vapsr.schedule.milestones[0]) == (0.999, (0.9, 0.99), 60000)
    red = load_config(REPO / "configs/rednet/red30_denoise.yml")
    assert (red.optim.lr, red.loss.name, red.data.train.patch) == (1e-4, "mse", 50)


def test_defaults_and_yaml_exponent_strings() -> None:
    config = config_from_dict({**MINIMAL, "optim": {"lr": "2e-4"}})  # PyYAML reads 2e-4 as a string
    assert config.optim.lr == 2e-4 and config.schedule.name == "constant" and config.ema.decay == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim": {"lrr": 1.0}}, "unknown key optim.lrr"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number"),
        ({"optim": {"betas": [0.9, "x"]}}, r"optim.betas\[1\]"),
        ({"optim": {"betas": [0.9]}}, "optim.betas: expected 2 items"),
        ({"train": {"total_steps": 2.5}}, "train.total_steps: expected an integer"),
        ({"train": {"total_steps": 3, "deterministic": "yes"}}, "train.deterministic: expected true/false"),
        ({"loss": {"name": "ssim"}}, "loss.name: 'ssim' is not one of"),
        ({"model": {"family": "bicubic_pp", "arch": {"chanels": 4}}}, "unknown key model.arch.chanels"),
        ({"model": {"family": "bicubic_pp", "arch": {"channels": "4"}}}, "model.arch.channels: expected an integer"),
        ({"model": {"family": "nope"}}, "model.family: unknown family 'nope'"),
        ({"model": {"family": "vapsr", "preset": "vapsr_x5"}}, "not a vapsr preset"),
        ({"data": {"batch_size": 2}}, "missing required key data.train"),
    ],
)
def test_invalid_configs_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**MINIMAL, **change})


def test_overrides_are_yaml_parsed_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump(MINIMAL))
    config = load_config(path, ["optim.lr=2e-4", "optim.betas=[0.9, 0.9]", "ema.decay=0.5", "name=other"])
    assert (config.optim.lr, config.optim.betas, config.ema.decay, config.name) == (2e-4, (0.9, 0.9), 0.5, "other")
    with pytest.raises(ConfigError, match="unknown key optim.momentun"):
        load_config(path, ["optim.momentun=0.9"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["optim.lr"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(path, ["name.x=1"])
    # safe_load, never eval: Python expressions stay strings and fail type checks
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        load_config(path, ["optim.lr=__import__('os').getcwd()"])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "extra": 1}))
    with pytest.raises(ConfigError, match=r"bad.yml: unknown key extra"):
        load_config(bad)


def test_cli_dry_run_prints_the_resolved_config_and_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from restorekit.cli import main

    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert main(["train", str(path), "--dry-run", "optim.lr=3e-4"]) == 0  # options and overrides intermix
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 3e-4 and printed["optim"]["betas"] == [0.9, 0.999]
    assert main(["train", str(path), "optim.lr=oops", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "optim.lr" in err and "\n" not in err


def test_broken_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    from restorekit.errors import ConfigError
    from restorekit.train.config import load_config

    path = tmp_path / "broken.yml"
    path.write_text("model: {family: vapsr\noptim: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML at line ") and "\n" not in message


def test_gt_folder_lists_and_precompute_are_for_degraded_sets(tmp_path: Path) -> None:
    from restorekit.data.build import make_dataset

    config = config_from_dict({**MINIMAL, "data": {"train": {"gt": ["a", "b"], "kind": "degraded"}}})
    assert config.data.train.gt == ("a", "b")
    with pytest.raises(ConfigError, match=r"data.train.gt"):
        config_from_dict({**MINIMAL, "data": {"train": {"gt": ["a", 3]}}})
    paired_list = config_from_dict({**MINIMAL, "data": {"train": {"gt": ["a", "b"], "lq": "lq"}}})
    with pytest.raises(ConfigError, match="one gt folder"):
        make_dataset(paired_list.data.train, 1, 3, 0, train=True)
    paired_precompute = config_from_dict({**MINIMAL, "data": {"train": {"gt": "a", "lq": "b", "precompute_lq": True}}})
    with pytest.raises(ConfigError, match="precompute_lq is for kind: degraded"):
        make_dataset(paired_precompute.data.train, 1, 3, 0, train=True)


def test_channel_shuffle_reaches_the_training_set_only(tmp_path: Path) -> None:
    from PIL import Image

    from restorekit.data.build import make_dataset

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    section = {"gt": str(tmp_path), "kind": "degraded", "degradation": "awgn:10", "channel_shuffle": True}
    config = config_from_dict({**MINIMAL, "data": {"train": section}})
    assert make_dataset(config.data.train, 1, 3, 0, train=True).augment.channel_shuffle
    assert not make_dataset(config.data.train, 1, 3, 0, train=False).augment.channel_shuffle
    with pytest.raises(ConfigError, match=r"data.train.channel_shuffle"):
        config_from_dict({**MINIMAL, "data": {"train": {**section, "channel_shuffle": "often"}}})


# --- allowed ranges, YAML hazards, run names (issue: reliability) ------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.grad_clip=-1", "optim.grad_clip: must be > 0"),  # a negative max norm trains uphill
        ("train.total_steps=-5", "train.total_steps: must be >= 1"),  # exported the untrained network
        ("data.train.max_images=-1", "data.train.max_images: must be >= 1"),  # dropped the last image
        ("val.every=-1", "val.every: must be >= 0"),  # validated every step
        ("train.checkpoint_every=0", "train.checkpoint_every: must be >= 1"),
        ("train.log_every=-3", "train.log_every: must be >= 1"),
        ("data.batch_size=0", "data.batch_size: must be >= 1"),
        ("data.num_workers=-1", "data.num_workers: must be >= 0"),
        ("optim.lr=.nan", "optim.lr: expected a finite number"),
        ("optim.lr=-1e-4", "optim.lr: must be >= 0"),
        ("optim.lr=.inf", "optim.lr: expected a finite number"),
        ("ema.decay=1.5", "ema.decay: must be < 1"),
        ("optim.betas=[0.9, 1.0]", r"optim.betas\[1\]: must be < 1"),
        ("schedule.milestones=[10, -1]", r"schedule.milestones\[1\]: must be >= 0"),
        ("loss.stage_weights=[1, -0.5]", r"loss.stage_weights\[1\]: must be >= 0"),
        ("val.convention=sr-y", "val.convention: 'sr-y' is not one of auto, sr_y"),
        ("data.train.degradation=blur:3", "data.train.degradation: bad degradation 'blur:3'"),
        ("name=../../x", "name: '../../x' is not a plain folder name"),
        ("name=/tmp/x", "name: '/tmp/x' is not a plain folder name"),
        ("name=..", "name: '..' is not a plain folder name"),
        ("model.family=vapsr", "unknown key model.arch.channels"),
    ],
)
def test_out_of_range_values_are_refused_at_dry_run(override: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, [override])
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_family_configs_validate_themselves_at_dry_run(tmp_path: Path) -> None:
    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump({**MINIMAL, "model": {"family": "vapsr", "arch": {"scale": 5}}}))
    with pytest.raises(ConfigError, match="model.arch: VapSR: scale must be 2, 3 or 4"):
        load_config(path)
    with pytest.raises(ConfigError, match="model.arch: RED-Net: depth must be an even number"):
        load_config(path, ["model.family=rednet", "model.arch={depth: 7}"])


def test_boundary_values_are_accepted() -> None:
    config = config_from_dict(
        {**MINIMAL, "ema": {"decay": 0.0}, "val": {"every": 0, "convention": "gray"}, "data": {
            "train": {"gt": "gt", "lq": "lq", "max_images": 1, "repeat": 1}, "batch_size": 1, "num_workers": 0}}
    )
    assert (config.data.train.max_images, config.data.batch_size, config.val.convention) == (1, 1, "gray")


def test_every_numeric_field_has_a_range() -> None:
    """A new int/float config field cannot be added without saying which values it allows."""
    import dataclasses
    import typing

    from restorekit.train.config import RULES

    def numeric(hint: object) -> bool:
        args = typing.get_args(hint)
        return hint in (int, float) or any(numeric(a) for a in args if a is not Ellipsis)

    def sections(cls: type) -> set[type]:
        found = {cls}
        for hint in typing.get_type_hints(cls).values():
            for inner in (hint, *typing.get_args(hint), *(a for h in typing.get_args(hint) for a in typing.get_args(h))):
                if isinstance(inner, type) and dataclasses.is_dataclass(inner) and inner not in found:
                    found |= sections(inner)
        return found

    classes = sections(RunConfig)
    assert len(classes) >= 9
    for cls in classes:
        for name, hint in typing.get_type_hints(cls).items():
            if numeric(hint):
                assert (cls, name) in RULES, f"{cls.__name__}.{name} has no allowed range in RULES"
    for cls, name in RULES:
        assert name in {f.name for f in dataclasses.fields(cls)}, f"RULES names {cls.__name__}.{name}, not a field"


def test_duplicate_keys_are_refused_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yml"
    path.write_text(yaml.safe_dump(MINIMAL) + "optim: {lr: 1.0e-3}\noptim: {grad_clip: 0.01}\n")
    with pytest.raises(ConfigError, match=r"dup.yml: not valid YAML at line \d+, column 1: duplicate key 'optim'"):
        load_config(path)
    path.write_text(yaml.safe_dump(MINIMAL).replace("total_steps: 3", "total_steps: 3\n  total_steps: 4"))
    with pytest.raises(ConfigError, match="duplicate key 'total_steps'"):
        load_config(path)


def test_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    import resource
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # 9**9 items if expanded
    path = tmp_path / "bomb.yml"
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(MINIMAL))
    assert path.stat().st_size < 1000
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(ConfigError, match="alias \\*a0 is not allowed"):
        load_config(path)
    assert time.perf_counter() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB
    with pytest.raises(ConfigError, match="alias"):
        load_config(tmp_path / "bomb.yml", ["optim.betas=&b [0.9, *b]"])


def test_unreadable_config_files_are_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 16)
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(binary)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path)  # a folder
    deep = tmp_path / "deep.yml"
    deep.write_text("[" * 20000)
    with pytest.raises(ConfigError, match="deep.yml: not valid YAML"):
        load_config(deep)
