"""The hashed locks of requirements/ against pyproject.toml (decision 0020): every line pinned
and hashed, each set holding what its part of pyproject.toml needs and nothing of another part,
and uv's own command, run again, giving the same pins.

What a set needs is read from the installed distributions (`make install` installs the dev lock):
the closure of its requirements, extras and markers applied for this interpreter."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.checks import VENV_BIN
from tests.support import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "requirements"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
LOCKS = ("runtime", "flower", "dev", "audit", "lowest")
# What the image must never hold, besides the packages the `embedded`, `flower` and `tracing`
# extras name.
DEV_TOOLS = ("pytest", "hypothesis", "ruff", "mypy", "uv", "pip-audit", "schemathesis", "pgqueuer")
# uv writes the command that made the file; the tests run it again.
_HEADER = re.compile(r"^#\s+(uv pip compile .+)$", re.MULTILINE)
# What uv says when the package index did not answer.
_UNREACHABLE = re.compile(
    r"Failed to fetch|error sending request|dns error|Could not connect|timed out|Network is unreachable",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self) -> bool:
        """Whether this interpreter installs it."""
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """The pins of a lock file; a line that pins no exact version, or names an URL, an editable
    install or an option other than `--hash`, is refused."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for raw in logical.splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        if line.startswith("-"):
            raise ValueError(f"{path.name}: {line!r} is not a requirement")
        requirement, *options = re.split(r"\s+(?=--)", line)
        hashes = []
        for option in options:
            kind, _, value = option.partition("=")
            if kind != "--hash" or not value.startswith("sha256:"):
                raise ValueError(f"{path.name}: {option!r} is not a sha256 hash ({line})")
            hashes.append(value.strip())
        parsed = Requirement(requirement)
        specifiers = list(parsed.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or parsed.url or parsed.extras:
            raise ValueError(f"{path.name}: {requirement!r} is not one pinned version")
        [exact] = specifiers
        pins.append(
            Pin(
                canonicalize_name(parsed.name), Version(exact.version), parsed.marker, tuple(hashes)
            )
        )
    return pins


def _applicable(lock: str) -> dict[str, Version]:
    pins = [pin for pin in read_lock(REQUIREMENTS / f"{lock}.txt") if pin.applies()]
    versions = {pin.name: pin.version for pin in pins}
    assert len(versions) == len(pins), f"{lock}: a package pinned twice for this interpreter"
    return versions


def _extra(name: str) -> list[Requirement]:
    return [Requirement(line) for line in PYPROJECT["project"]["optional-dependencies"][name]]


def _base() -> list[Requirement]:
    return [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]


def _meets(locked: dict[str, Version], requirement: Requirement) -> bool:
    version = locked.get(canonicalize_name(requirement.name))
    return version is not None and requirement.specifier.contains(version, prereleases=True)


def _wanted(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in {*extras, ""})


def closure(requirements: Iterable[Requirement]) -> dict[str, Version]:
    """Every distribution the requirements pull in here, at its installed version; the project's
    own extras (`taskgate[embedded]`) are read from pyproject.toml."""
    found: dict[str, Version] = {}
    # Each requirement with the extras of the one that asked for it (its marker may name them).
    todo = [(requirement, frozenset[str]()) for requirement in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if not _wanted(requirement, extras):
            continue
        if name == PROJECT:
            todo += [
                (inner, frozenset()) for extra in requirement.extras for inner in _extra(extra)
            ]
            continue
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed: run `make install`")
        found[name] = Version(distribution.version)
        todo += [
            (Requirement(line), frozenset(requirement.extras))
            for line in distribution.requires or ()
        ]
    return found


def _sets() -> dict[str, list[Requirement]]:
    audit = [
        Requirement(line)
        for line in (REQUIREMENTS / "audit.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {
        "runtime": _base(),
        "flower": [*_base(), *_extra("flower")],
        "dev": [*_base(), *_extra("dev")],
        "audit": audit,
    }


class TestReadLock:
    def test_reads_a_pin_its_marker_and_its_hashes(self, tmp_path: Path) -> None:
        lock = tmp_path / "lock.txt"
        lock.write_text(
            "# header\ncolorama==0.4.6 ; sys_platform == 'win32' \\\n"
            "    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via click\n"
        )

        [pin] = read_lock(lock)

        assert (pin.name, pin.version, pin.hashes) == (
            "colorama",
            Version("0.4.6"),
            ("sha256:aa", "sha256:bb"),
        )
        assert str(pin.marker) == 'sys_platform == "win32"'

    @pytest.mark.parametrize(
        "line", ["celery>=5.6", "-e .", "celery==5.7.0 --index-url=x", "celery @ file:///c.whl"]
    )
    def test_refuses_what_is_not_one_hashed_version(self, tmp_path: Path, line: str) -> None:
        lock = tmp_path / "lock.txt"
        lock.write_text(f"{line} \\\n    --hash=sha256:aa\n")

        with pytest.raises(ValueError, match="not"):
            read_lock(lock)


@pytest.mark.parametrize("lock", LOCKS)
class TestEveryLock:
    def test_every_line_is_one_version_with_its_hashes(self, lock: str) -> None:
        pins = read_lock(REQUIREMENTS / f"{lock}.txt")

        assert pins
        assert [pin.name for pin in pins if not pin.hashes] == []

    def test_names_the_command_that_wrote_it(self, lock: str) -> None:
        [command] = _HEADER.findall((REQUIREMENTS / f"{lock}.txt").read_text())

        assert "--generate-hashes" in command
        assert f"-o requirements/{lock}.txt" in command


class TestSets:
    @pytest.mark.parametrize("lock", ["runtime", "flower", "dev", "audit"])
    def test_holds_exactly_what_its_requirements_pull_in_at_the_installed_versions(
        self, lock: str
    ) -> None:
        wanted = closure(_sets()[lock])

        locked = _applicable(lock)

        # Missing: `make lock`. Versions apart: `make install` (the venv is behind the lock).
        assert sorted(set(wanted) - set(locked)) == [], "missing from the lock"
        assert sorted(set(locked) - set(wanted) - {"pip"}) == [], "locked but not needed"
        assert {name: str(v) for name, v in wanted.items() if locked[name] != v} == {}

    @pytest.mark.parametrize("lock", ["runtime", "flower", "dev"])
    def test_every_requirement_of_pyproject_toml_is_met(self, lock: str) -> None:
        locked = _applicable(lock)

        unmet = [
            str(requirement)
            for requirement in _sets()[lock]
            if canonicalize_name(requirement.name) != PROJECT
            and _wanted(requirement, ())
            and not _meets(locked, requirement)
        ]

        assert unmet == []

    def test_the_runtime_lock_holds_no_engine_flower_or_dev_tool(self) -> None:
        forbidden = {
            canonicalize_name(requirement.name)
            for requirement in [*_extra("embedded"), *_extra("flower"), *_extra("tracing")]
        } | set(DEV_TOOLS)

        assert sorted(forbidden & set(_applicable("runtime"))) == []

    @pytest.mark.parametrize("lock", ["runtime", "flower", "audit"])
    def test_pins_the_dev_lock_s_versions(self, lock: str) -> None:
        dev = {pin.name: pin.version for pin in read_lock(REQUIREMENTS / "dev.txt")}

        apart = {
            pin.name: (str(pin.version), str(dev.get(pin.name)))
            for pin in read_lock(REQUIREMENTS / f"{lock}.txt")
            if dev.get(pin.name) != pin.version
        }

        assert apart == {}

    def test_the_lowest_lock_meets_every_dev_requirement(self) -> None:
        locked = _applicable("lowest")

        unmet = [
            str(requirement)
            for requirement in [*_base(), *_extra("dev")]
            if canonicalize_name(requirement.name) != PROJECT
            and _wanted(requirement, ())
            and not _meets(locked, requirement)
        ]

        assert unmet == []


@pytest.mark.parametrize("lock", LOCKS)
def test_uv_s_command_run_again_gives_the_same_pins(lock: str, tmp_path: Path) -> None:
    """What `make lock` would write: the file's own command, the file as the pins to keep."""
    path = REQUIREMENTS / f"{lock}.txt"
    [command] = _HEADER.findall(path.read_text())
    argv = shlex.split(command)
    output = tmp_path / path.name
    shutil.copy(path, output)
    argv[argv.index("-o") + 1] = str(output)

    done = subprocess.run(  # noqa: S603 - the venv's uv, the lock's own arguments
        [str(VENV_BIN / "uv"), *argv[1:], "--quiet"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    if done.returncode != 0 and _UNREACHABLE.search(done.stderr):
        pytest.skip(f"the package index is unreachable, nothing resolved: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    again = {(pin.name, pin.version, str(pin.marker)) for pin in read_lock(output)}
    assert again == {(pin.name, pin.version, str(pin.marker)) for pin in read_lock(path)}
