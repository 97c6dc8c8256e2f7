"""`pip-audit` over the locked set (requirements/dev.txt, every version the other locks pin): a known vulnerability fails the suite
unless pip-audit-allowlist.toml names it with a reason and a date to look at it again.

pip-audit asks its vulnerability service about each pin. Where that service cannot be reached the
audit is skipped, saying so, never passed: pip-audit itself reports "No known vulnerabilities
found" when every package came back unknown, so that case counts as unreachable too."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT

LOCK = REPO_ROOT / "requirements" / "dev.txt"
ALLOWLIST = REPO_ROOT / "pip-audit-allowlist.toml"

# What pip-audit (or requests under it) prints when the service did not answer at all.
_UNREACHABLE = re.compile(
    r"Could not connect|ConnectionError|ConnectTimeout|ReadTimeout|NameResolutionError"
    r"|Max retries exceeded|network may be blocking"
)
_NOT_FOUND = "not found"  # pip-audit's skip reason for a pin the service does not know


@dataclass(frozen=True)
class Allowed:
    id: str
    package: str
    reason: str
    review_by: date


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def matches(self, allowed: Allowed) -> bool:
        return _canonical(allowed.package) == _canonical(self.package) and (
            allowed.id == self.id or allowed.id in self.aliases
        )


def load_allowlist(path: Path) -> list[Allowed]:
    """The entries of an allow-list file; one without an id, package, reason or date is refused."""
    entries = tomllib.loads(path.read_text()).get("allow", [])
    allowed = []
    for number, entry in enumerate(entries, start=1):
        unknown = set(entry) - {"id", "package", "reason", "review_by"}
        if unknown:
            raise ValueError(f"allow-list entry {number}: unknown keys {sorted(unknown)}")
        for key in ("id", "package", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ValueError(f"allow-list entry {number}: `{key}` must be a non-empty string")
        if type(entry.get("review_by")) is not date:
            raise ValueError(f"allow-list entry {number}: `review_by` must be a date (2027-01-31)")
        allowed.append(Allowed(**entry))
    return allowed


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _today() -> date:
    return datetime.now(UTC).date()


def _audit(lock: Path) -> list[dict[str, Any]]:
    """pip-audit's report on every pin of `lock` (each pin as it is, nothing resolved or
    installed); skips the test when the vulnerability service did not answer."""
    result = subprocess.run(  # noqa: S603 (fixed argv)
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--requirement",
            str(lock),
            "--require-hashes",  # the lock pins every package, dependencies included, by hash
            "--disable-pip",
            "--format",
            "json",
            "--progress-spinner",
            "off",
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        if _UNREACHABLE.search(result.stderr):
            last = result.stderr.strip().splitlines()[-1]
            pytest.skip(
                f"pip-audit's vulnerability service is unreachable, nothing audited: {last}"
            )
        raise AssertionError(f"pip-audit failed ({result.returncode}):\n{result.stderr}") from None
    dependencies: list[dict[str, Any]] = report["dependencies"]
    unknown = [dep for dep in dependencies if _NOT_FOUND in dep.get("skip_reason", "")]
    if dependencies and len(unknown) == len(dependencies):
        pytest.skip(
            "pip-audit's vulnerability service is unreachable, nothing audited: it knew none of "
            f"the {len(dependencies)} locked packages ({unknown[0]['skip_reason']})"
        )
    return dependencies


@dataclass(frozen=True)
class Verdict:
    not_audited: list[str]
    unlisted: list[Finding]
    stale: list[Allowed]


def judge(dependencies: list[dict[str, Any]], allowed: list[Allowed]) -> Verdict:
    """What in pip-audit's JSON report fails the suite: a pin it could not audit, a finding no
    entry allows, an entry that allows nothing reported."""
    findings = [
        Finding(
            package=dep["name"],
            version=dep["version"],
            id=vuln["id"],
            aliases=tuple(vuln.get("aliases", ())),
            fix_versions=tuple(vuln.get("fix_versions", ())),
        )
        for dep in dependencies
        for vuln in dep.get("vulns", ())
    ]
    return Verdict(
        not_audited=[
            f"{dep['name']}: {dep['skip_reason']}" for dep in dependencies if "skip_reason" in dep
        ],
        unlisted=[f for f in findings if not any(f.matches(entry) for entry in allowed)],
        stale=[entry for entry in allowed if not any(f.matches(entry) for f in findings)],
    )


class TestAllowlist:
    def test_every_entry_has_an_id_a_package_a_reason_and_a_review_date(self) -> None:
        entries = load_allowlist(ALLOWLIST)

        assert all(entry.reason.strip() for entry in entries)

    def test_no_entry_is_past_its_review_date(self) -> None:
        overdue = [entry for entry in load_allowlist(ALLOWLIST) if entry.review_by < _today()]

        assert overdue == [], "review these entries: renew `review_by` or upgrade the package"

    def test_an_entry_without_a_reason_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "allow.toml"
        path.write_text('[[allow]]\nid = "GHSA-1"\npackage = "x"\nreview_by = 2030-01-01\n')

        with pytest.raises(ValueError, match="`reason` must be a non-empty string"):
            load_allowlist(path)

    def test_an_entry_without_a_review_date_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "allow.toml"
        path.write_text('[[allow]]\nid = "GHSA-1"\npackage = "x"\nreason = "not reached"\n')

        with pytest.raises(ValueError, match="`review_by` must be a date"):
            load_allowlist(path)


_ALLOWED = Allowed("CVE-2026-1", "foo-bar", "not reached", date(2030, 1, 1))


def _dependency(name: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


class TestJudge:
    def test_a_finding_no_entry_allows_fails(self) -> None:
        report = [_dependency("foo-bar"), _dependency("baz", {"id": "PYSEC-9", "aliases": []})]

        verdict = judge(report, [])

        assert [(f.package, f.id) for f in verdict.unlisted] == [("baz", "PYSEC-9")]

    def test_a_finding_is_allowed_by_an_alias_and_the_package_spelled_otherwise(self) -> None:
        report = [_dependency("Foo_Bar", {"id": "PYSEC-1", "aliases": ["CVE-2026-1"]})]

        verdict = judge(report, [_ALLOWED])

        assert verdict == Verdict(not_audited=[], unlisted=[], stale=[])

    def test_an_entry_that_allows_nothing_reported_fails(self) -> None:
        verdict = judge([_dependency("foo-bar")], [_ALLOWED])

        assert verdict.stale == [_ALLOWED]

    def test_a_pin_the_service_could_not_audit_fails(self) -> None:
        report = [_dependency("foo-bar"), {"name": "baz", "skip_reason": "not found"}]

        verdict = judge(report, [])

        assert verdict.not_audited == ["baz: not found"]


class TestLockedSet:
    def test_every_pin_is_audited_and_no_vulnerability_is_outside_the_allowlist(self) -> None:
        allowed = load_allowlist(ALLOWLIST)

        verdict = judge(_audit(LOCK), allowed)

        # not_audited: a partial audit is not a pass; unlisted: upgrade these pins, or allow-list
        # them with a reason; stale: no longer reported, delete these entries.
        assert verdict == Verdict(not_audited=[], unlisted=[], stale=[])
