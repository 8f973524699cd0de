"""Installs are reproducible: what pyproject.toml asks for is pinned, with hashes, in the locks
that `make install` and the image use, and both use them with `--require-hashes`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _locked(name: str) -> dict[str, tuple[Version, int]]:
    """Each pinned package of a lock file: its version and how many hashes it carries."""
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", (ROOT / name).read_text()):
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", block)
        if match:
            name_ = canonicalize_name(match[1].split("[")[0])
            pins[name_] = (Version(match[2]), block.count("--hash=sha256:"))
    return pins


def _wanted(*groups: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        wanted += [Requirement(r) for r in project["optional-dependencies"][group]]
    return wanted


def test_every_requirement_is_pinned_with_hashes_at_an_allowed_version() -> None:
    for lock, groups in (("requirements-dev.lock", ("test", "bench")), ("requirements.lock", ())):
        pins = _locked(lock)
        for requirement in _wanted(*groups):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} is not in {lock}: run `make lock`"
            version, hashes = pins[name]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, outside {requirement.specifier}: run `make lock`"
            )
            assert hashes >= 1, f"{name} has no hash in {lock}"


def test_every_pin_has_a_hash_and_the_two_locks_agree() -> None:
    dev, app = _locked("requirements-dev.lock"), _locked("requirements.lock")
    assert all(hashes for _, hashes in dev.values())
    assert all(hashes for _, hashes in app.values())
    # The image runs the versions the tests ran.
    for name, (version, _) in app.items():
        assert dev[name][0] == version, f"{name}: image {version}, tests {dev[name][0]}"
    # What builds paysaga itself is locked too (pip refuses unhashed packages).
    assert {"pip", "setuptools"} <= app.keys()


def test_install_and_image_refuse_anything_unhashed() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    # Nothing else is resolved at install: the project is added without its dependencies.
    for text in (makefile, dockerfile):
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base is not None
    # An exact release (or a digest), never a moving tag such as 3.11-slim.
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-[a-z-]+|python@sha256:[0-9a-f]{64}", base[1])
