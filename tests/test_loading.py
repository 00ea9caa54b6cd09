"""The one loading path: official checkpoints (VapSR, Bicubic++), wrappers, prefixes, safetensors
round trips, and readable errors for files that fit no family or contradict a preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import restorekit
from restorekit import loading
from restorekit.archs import bicubic_pp, vapsr
from restorekit.complexity import count_params
from restorekit.errors import DetectionError, WeightsError
from restorekit.loading import save_safetensors
from restorekit.model import build_model

OFFICIAL = {
    # preset: (exact parameter count from the official checkpoint, scale)
    "vapsr-x2": (329_236, 2),
    "vapsr-x3": (336_811, 3),
    "vapsr-x4": (342_220, 4),
    "vapsr-s": (154_956, 4),
    "bicubic-pp-x3": (50_400, 3),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_weights_load_with_exact_params(name: str, shared_weights: Path) -> None:
    model = restorekit.load(name)
    params, scale = OFFICIAL[name]
    assert count_params(model) == params
    assert model.scale == scale
    assert not model.training
    x = torch.rand(1, 3, 11, 14)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (1, 3, 11 * scale, 14 * scale)
    assert torch.isfinite(y).all()


def test_vapsr_checkpoint_prefers_params_ema(shared_weights: Path) -> None:
    raw, _ = loading.read_weights(shared_weights / "vapsr" / "VapSR_X4.pth")
    assert {"params", "params_ema"} <= raw.keys()
    state = loading.unwrap(raw)
    assert all(torch.equal(state[k], raw["params_ema"][k]) for k in state)
    assert any(not torch.equal(raw["params"][k], raw["params_ema"][k]) for k in state)


def test_file_path_detects_family_and_config(shared_weights: Path) -> None:
    model = restorekit.load(shared_weights / "vapsr" / "VapSR-S.pth")
    assert model.family == "vapsr"
    assert model.config == vapsr.PRESETS["vapsr_s"]
    model = restorekit.load(shared_weights / "bicubicpp" / "bicubic_pp_x3.pth")
    assert model.config == bicubic_pp.PRESETS["bicubic_pp_x3"]


def test_preset_contradiction_is_a_readable_error(shared_weights: Path) -> None:
    with pytest.raises(DetectionError, match=r"num_block=20 \(expected 21\)"):
        restorekit.load(shared_weights / "vapsr" / "VapSR_X2.pth", preset="vapsr-x4")
    with pytest.raises(DetectionError, match="expected a vapsr checkpoint"):
        restorekit.load(shared_weights / "bicubicpp" / "bicubic_pp_x3.pth", preset="vapsr-x4")


@pytest.mark.parametrize(
    "family,config",
    [
        ("vapsr", vapsr.Config(scale=3, num_feat=8, num_block=2, d_atten=8)),
        ("vapsr", vapsr.Config(scale=4, num_feat=8, num_block=1, d_atten=4, conv_groups=2)),
        ("bicubic_pp", bicubic_pp.Config(channels=6, bias=True)),
        ("bicubic_pp", bicubic_pp.Config(scale=2, channels=4)),
    ],
)
def test_round_trip_state_dict_and_safetensors(family: str, config: object, tmp_path: Path) -> None:
    model = build_model(family, config).eval()
    state = model.net.state_dict()
    found_family, found_config = loading.detect(state)
    assert found_family.NAME == family and found_config == config

    wrapped = tmp_path / "wrapped.pth"
    torch.save({"params": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    st_path = save_safetensors(model, tmp_path / "model.safetensors")
    x = torch.rand(1, 3, 9, 13)
    with torch.inference_mode():
        expected = model(x)
        for path in (wrapped, st_path):
            loaded = restorekit.load(path)
            assert loaded.config == config
            assert torch.equal(loaded(x), expected)


def test_unknown_state_dict_names_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(DetectionError, match="matches no known family.*encoder.weight"):
        restorekit.load(path)


def test_partial_checkpoint_lists_missing_keys(tmp_path: Path) -> None:
    state = build_model("bicubic_pp", bicubic_pp.Config()).net.state_dict()
    net = bicubic_pp.build(bicubic_pp.Config())
    del state["conv2.weight"]
    with pytest.raises(DetectionError, match="missing 1 .*conv2.weight"):
        loading.load_strict(net, state, "bicubic_pp")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"params": {"conv0.weight": torch.zeros(1)}, "obj": Path("x")}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        restorekit.load(path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        restorekit.load(tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        restorekit.load(bad)


def test_unknown_preset_and_family_are_readable_errors(tmp_path: Path) -> None:
    from restorekit.errors import RestorekitError

    path = save_safetensors(build_model("bicubic_pp", bicubic_pp.Config(channels=4)), tmp_path / "m.safetensors")
    with pytest.raises(RestorekitError) as info:
        restorekit.load(path, preset="nosuch")
    assert str(info.value).startswith("unknown preset 'nosuch'")  # no KeyError quoting
    with pytest.raises(KeyError):  # still a KeyError for code that looks names up
        restorekit.get_preset("nosuch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_unavailable_device_is_a_readable_error(shared_weights: Path) -> None:
    from restorekit.errors import DeviceError

    with pytest.raises(DeviceError, match="CUDA is not available"):
        restorekit.load("vapsr-x4", device="cuda")


def test_non_checkpoint_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "photo.pth"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(WeightsError) as info:
        restorekit.load(path)
    assert "not a PyTorch checkpoint or safetensors file" in str(info.value)
    assert "\n" not in str(info.value)


def test_self_referential_pickle_is_refused_not_followed(tmp_path: Path) -> None:
    cycle: dict = {}
    cycle["params"] = cycle
    path = tmp_path / "cycle.pth"
    torch.save(cycle, path)
    with pytest.raises(DetectionError, match="contain themselves"):
        restorekit.load(path)


def test_metadata_cannot_imply_a_network_larger_than_the_tensors(tmp_path: Path) -> None:
    import json
    import resource

    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    config = {"scale": 4, "num_feat": 512, "num_block": 200, "d_atten": 512, "conv_groups": 1, "in_channels": 3}
    save_file({"x": torch.zeros(1)}, path, {"family": "vapsr", "config": json.dumps(config)})
    assert path.stat().st_size < 400
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DetectionError, match="larger than"):
        restorekit.load(path)
    # the network this config describes would take ~2 GB; refusing it must not allocate it
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


def test_recorded_config_is_checked_against_the_tensors(tmp_path: Path) -> None:
    """A real model's file whose metadata names a bigger config: the budgeted meta build stops it."""
    import json

    from safetensors.torch import save_file

    model = build_model("vapsr", vapsr.Config(scale=2, num_feat=8, num_block=1, d_atten=8))
    config = json.loads(loading.config_to_json(model.config)) | {"num_block": 40}
    path = tmp_path / "lies.safetensors"
    save_file(dict(model.net.state_dict()), path, {"family": "vapsr", "config": json.dumps(config)})
    with pytest.raises(DetectionError, match="larger than the tensors"):
        restorekit.load(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_non_float_and_non_finite_weights_are_refused(dtype: torch.dtype, tmp_path: Path) -> None:
    state = build_model("bicubic_pp", bicubic_pp.Config(channels=4)).net.state_dict()
    bad = dict(state, **{"conv1.weight": state["conv1.weight"].to(dtype)})
    torch.save(bad, tmp_path / "int.pth")
    with pytest.raises(WeightsError, match=f"conv1.weight has dtype {dtype}"):
        restorekit.load(tmp_path / "int.pth")
    nan = dict(state, **{"conv2.weight": state["conv2.weight"].clone()})
    nan["conv2.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match="conv2.weight holds 1 NaN/Inf"):
        restorekit.load(tmp_path / "nan.pth")


def test_refused_pickle_never_suggests_unsafe_loading(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import os

    class Evil:
        def __reduce__(self) -> tuple:
            return os.system, ("true",)

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(WeightsError) as info:
        restorekit.load(path)
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)
    assert "GLOBAL posix.system" in str(info.value) or "GLOBAL os.system" in str(info.value)
    assert capfd.readouterr().err == ""  # no torch warning above our line


def test_every_family_module_exposes_the_family_surface() -> None:
    """The typed Family protocol is only structural: check the surface each module really has."""
    from restorekit.archs import FAMILIES, FAMILY_SURFACE

    for name, family in FAMILIES.items():
        missing = [attr for attr in FAMILY_SURFACE if not hasattr(family, attr)]
        assert not missing, f"{name} lacks {missing}"
        assert family.NAME == name and family.PAD_MODE in ("constant", "reflect", "replicate")
        assert all(callable(getattr(family, f)) for f in ("build", "global_statistics", "matches", "infer_config"))
        assert all(isinstance(config, family.Config) for config in family.PRESETS.values())
