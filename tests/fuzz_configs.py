"""Fuzz corpus of training configs: every shipped recipe, the boundary values of every ranged field,
type confusion in every field, YAML hazards (duplicate keys, alias bombs, deep nesting, binary junk),
hostile run names and seeded random edits of real recipes, each with the outcome reading must give.

Nothing is committed but this generator: ``generate(folder, n_random, seed)`` writes the corpus at
test time (``tests/test_fuzz_config.py``). For a larger run: ``python tests/fuzz_configs.py /tmp/c --random 2000``.

Outcomes: ``ok`` (validates; ``field``/``value`` say what the parsed config must hold), ``refused``
(a one-line ConfigError naming the file and matching ``match``), ``either`` (never anything else).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from fuzz_common import command_line, judge_all, outcome, outcome_problems

import restorekit.archs  # noqa: F401 - imports torch up front: a per-case alarm must never fire inside that import
from restorekit.train.config import RULES, Range, RunConfig

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for d in ("nafnet", "hinet", "rednet", "bicubic_pp", "vapsr") for p in (REPO / "configs" / d).glob("*.yml"))
Outcome = Literal["ok", "refused", "either"]

MINIMAL: dict[str, Any] = {
    "name": "t",
    "model": {"family": "bicubic_pp", "arch": {"channels": 4}},
    "data": {"train": {"gt": "gt", "lq": "lq", "kind": "paired"}, "val": {"gt": "gt", "lq": "lq"}},
    "train": {"total_steps": 3},
}


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expect: Outcome
    match: str = ""
    field: str = ""  # dotted path whose parsed value must equal ``value`` (ok cases)
    value: Any = None


def section_paths() -> dict[type, list[str]]:
    """Where each config section class appears in a recipe (``DatasetSection`` at data.train and data.val)."""
    paths: dict[type, list[str]] = {RunConfig: [""]}

    def walk(cls: type, prefix: str) -> None:
        for name, hint in typing.get_type_hints(cls).items():
            for inner in (hint, *typing.get_args(hint)):
                if isinstance(inner, type) and dataclasses.is_dataclass(inner):
                    path = f"{prefix}{name}"
                    paths.setdefault(inner, []).append(path)
                    walk(inner, path + ".")

    walk(RunConfig, "")
    return paths


def _set(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(raw))
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _boundaries(rule: Range, integer: bool) -> list[tuple[float, bool]]:
    """(value, allowed) pairs at and just beyond each bound of a range."""
    step = 1 if integer else 1e-3
    out: list[tuple[float, bool]] = []
    if rule.low is not None:
        out += [(rule.low, not rule.low_open), (rule.low - step, False)]
        if rule.low_open:
            out.append((rule.low + step, True))
    if rule.high is not None:
        out += [(rule.high, not rule.high_open), (rule.high + step, False)]
        if rule.high_open:
            out.append((rule.high - step, True))
    return out


def _is_int(hint: Any) -> bool:
    return hint is int or any(_is_int(a) for a in typing.get_args(hint) if a is not Ellipsis)


def _named_cases(folder: Path) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, text: str | bytes, expect: Outcome, match: str = "", field: str = "", value: Any = None) -> None:
        path = folder / f"{name}.yml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        cases.append(Case(name, path, expect, match, field, value))

    for recipe in RECIPES:
        add(f"recipe-{recipe.parent.name}-{recipe.stem}", recipe.read_text(encoding="utf-8"), "ok")

    # --- every ranged field at and beyond its bounds, at every place its section appears ---
    paths = section_paths()
    for (cls, name), rule in RULES.items():
        if not isinstance(rule, Range):
            continue
        hint = typing.get_type_hints(cls)[name]
        is_tuple = typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
        for prefix in paths[cls]:
            dotted = f"{prefix}.{name}" if prefix else name
            for value, allowed in _boundaries(rule, _is_int(hint)):
                value = int(value) if _is_int(hint) else float(value)
                written: Any = [value, value] if is_tuple else value
                expected = tuple(written) if is_tuple else value
                tag = f"range-{dotted}-{value!r}".replace("/", "_")
                add(tag, yaml.safe_dump(_set(MINIMAL, dotted, written)), "ok" if allowed else "refused",
                    "" if allowed else f"{dotted}(\\[0\\])?: must be", dotted, expected)

    # --- type confusion in every field: a refusal must name the field ---
    for cls, prefixes in paths.items():
        for field in dataclasses.fields(cls):
            dotted = f"{prefixes[0]}.{field.name}" if prefixes[0] else field.name
            for i, junk in enumerate(["x", [], {}, True, ".nan", -(10**30)]):
                text = yaml.safe_dump(_set(MINIMAL, dotted, junk)).replace("'.nan'", ".nan")
                add(f"type-{dotted}-{i}", text, "either", dotted.split(".")[0])

    # --- YAML hazards ---
    base = yaml.safe_dump(MINIMAL)
    add("dup-top", base + "train: {total_steps: 5}\n", "refused", "duplicate key 'train'")
    add("dup-nested", base.replace("total_steps: 3", "total_steps: 3\n  total_steps: 9"), "refused", "duplicate key")
    add("dup-flow", base + "optim: {lr: 1.0e-3, lr: 2.0e-3}\n", "refused", "duplicate key 'lr'")
    # 9 levels of 9 aliases inside a field that wants an integer: the type error's repr of it expanded
    # 9**9 items (1.6 GB, 25 s) before aliases were refused
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    assert "channels: 4" in base
    add("alias-bomb", base.replace("channels: 4", f"channels: [{', '.join(levels)}]"), "refused", "alias")
    add("alias-simple", base + "optim: {betas: &b [0.9, 0.99]}\nschedule: {milestones: *b}\n", "refused", "alias")
    add("merge-key", base + "x: &x {lr: 1.0e-3}\noptim: {<<: *x}\n", "refused", "alias")
    add("deep-list", "[" * 100_000, "refused", "nested deeper than")  # quadratic in PyYAML's scanner
    add("deep-flow", "a: " + "{b: " * 10_000 + "1" + "}" * 10_000 + "\n", "refused", "nested deeper than")
    add("deep-indent", "".join(" " * i + "a:\n" for i in range(2_000)), "refused", "nested deeper than")
    add("deep-map", "a: " * 5000 + "1\n", "refused", "not valid YAML")
    add("empty", "", "refused", "expected a mapping")
    add("top-list", "- 1\n- 2\n", "refused", "expected a mapping")
    add("top-scalar", "hello\n", "refused", "expected a mapping")
    add("binary", bytes(range(256)) * 4, "refused", "not a text file|not valid YAML")
    add("tabs", base.replace("  ", "\t"), "refused", "not valid YAML")
    add("python-tag", base + "optim: !!python/object/apply:os.system ['true']\n", "refused", "not valid YAML")
    add("bom", "\ufeff" + base, "ok", field="train.total_steps", value=3)
    add("long-string", base.replace("name: t", "name: " + "n" * 100_000), "ok", field="name", value="n" * 100_000)
    add("unicode-name", base.replace("name: t", "name: 训练-фото"), "ok", field="name", value="训练-фото")
    for i, bad in enumerate(["../../x", "/abs/x", "a/b", "a\\b", "..", ".", "", "x\x00y"]):
        add(f"run-name-{i}", yaml.safe_dump({**MINIMAL, "name": bad}), "refused", "name")
    add("scale-5", yaml.safe_dump({**MINIMAL, "model": {"family": "vapsr", "arch": {"scale": 5}}}), "refused",
        "scale must be 2, 3 or 4")
    add("convention", yaml.safe_dump({**MINIMAL, "val": {"convention": "psnr_y"}}), "refused", "val.convention")
    return cases


def _edit(text: str, rng: random.Random) -> str:
    """One seeded random edit of a recipe: a deleted, inserted or swapped span, a duplicated line, a cut."""
    kind = rng.choice(["delete", "insert", "swap", "dupline", "cut"])
    i = rng.randrange(len(text))
    if kind == "delete":
        return text[:i] + text[i + rng.randint(1, 8) :]
    if kind == "insert":
        return text[:i] + rng.choice(["-", ":", "&a", "*a", "{", "[", "'", "\t", "\n  ", "1e9", "-1", "!!"]) + text[i:]
    if kind == "swap":
        j = rng.randrange(len(text))
        chars = list(text)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if kind == "dupline":
        lines = text.splitlines(keepends=True)
        k = rng.randrange(len(lines))
        return "".join(lines[: k + 1] + [lines[k]] + lines[k + 1 :])
    return text[:i]


def generate(folder: str | Path, n_random: int = 60, seed: int = 0) -> list[Case]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = _named_cases(folder)
    rng = random.Random(seed)
    texts = [p.read_text(encoding="utf-8") for p in RECIPES]
    for i in range(n_random):
        path = folder / f"random{i:04d}.yml"
        path.write_text(_edit(rng.choice(texts), rng), encoding="utf-8")
        cases.append(Case(path.stem, path, "either"))
    return cases


def load_case(case: Case) -> tuple[str, Any]:
    """("ok", RunConfig), ("refused", ConfigError) or ("crashed", any other exception) for one file."""
    from restorekit.errors import ConfigError
    from restorekit.train.config import load_config

    def read() -> RunConfig:
        config = load_config(case.path)
        config.arch_config()  # the family's own Config validated too
        return config

    return outcome(read, ConfigError, seconds=10)


def problems(case: Case, got: str, value: Any) -> list[str]:
    """What is wrong with one outcome (empty when it is the expected one)."""
    found = outcome_problems(case, got, value, lambda message: [] if message.startswith(f"{case.path}: ")
                             else [f"does not name the file: {message[:200]}"])
    if found is not None:
        return found
    if case.field and _get(value, case.field) != case.value:
        return [f"{case.name}: {case.field} is {_get(value, case.field)!r}, written {case.value!r}"]
    return []


def run(cases: list[Case]) -> tuple[dict[str, int], list[str]]:
    """Read every case: (outcome counts, problems)."""
    return judge_all(cases, load_case, problems, is_random=lambda case: case.name.startswith("random"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--random", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", action="store_true", help="read every config and report outcomes and problems")
    args = parser.parse_args()
    started = time.perf_counter()
    cases = generate(args.folder, args.random, args.seed)
    manifest = [{"file": c.path.name, "expect": c.expect, "match": c.match, "field": c.field} for c in cases]
    command_line(args.folder, cases, manifest, "configs", started, (lambda: run(cases)) if args.run else None)


if __name__ == "__main__":
    main()
