"""SSRF protection: hostile webhook URLs are refused, by rule or by what their host resolves to.

Name resolution is injected (no real DNS): `RESOLVES` is the whole world these tests see.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from app.webhooks.targets import (
    RefusedTarget,
    TargetPolicy,
    UnresolvableTarget,
    parse,
    resolve,
)

RESOLVES = {
    "example.com": ["93.184.216.34"],
    "internal.example.test": ["10.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "mixed.example.test": ["93.184.216.34", "10.0.0.1"],
    "v6loop.example.test": ["::1"],
    "mapped.example.test": ["::ffff:10.0.0.1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "localhost": ["127.0.0.1"],
    "hooks.example.test": ["127.0.0.1"],
    "ula.example.test": ["fd12:3456::1"],
}


async def fake_resolver(host: str, port: int) -> Sequence[str]:
    del port
    try:
        return RESOLVES[host.removesuffix(".")]
    except KeyError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None


async def check(url: str, policy: TargetPolicy) -> str:
    """The address a delivery to `url` would connect to (or the refusal raised)."""
    target = await resolve(parse(url, policy), policy, fake_resolver)
    return str(target.address)


STRICT = TargetPolicy()
LOOPBACK = TargetPolicy(allow_loopback=True)
PRIVATE = TargetPolicy(allow_private=True)

HOSTILE = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://127.1/",
    "http://localhost./",
    "http://localhost:6379/",
    "http://foo.localhost/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://example.com/",
    "javascript:alert(1)",
    "http://internal.example.test/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://mixed.example.test/",
    "http://v6loop.example.test/",
    "http://mapped.example.test/",
    "http://127.0.0.1.nip.io/",
    "http://ula.example.test/",
    "http://127.0.0.1:6379/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::1]/",
    "http://[::]/",
    "http://[fe80::1%25eth0]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://[fec0::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://198.18.0.1/",
    "http://192.0.0.8/",
    "http://240.0.0.1/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://user:secret@example.com/",
    "http://example.com@127.0.0.1/",
    "http://example.com\\@127.0.0.1/",
    "http://exa mple.com/",
    "http://example.com/\x00",
    "http:///127.0.0.1/",
    "http://example.com:0/",
    "http://example.com:70000/",
    "http://nowhere.example.test/",
    "https://" + "a" * 2050 + ".com/",
]


class TestHostileUrlsAreRefused:
    @pytest.mark.parametrize("url", HOSTILE)
    async def test_when_private_targets_are_not_allowed(self, url: str) -> None:
        with pytest.raises((RefusedTarget, UnresolvableTarget)):
            await check(url, STRICT)

    @pytest.mark.parametrize(
        "url",
        [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.0.0.1/",
            "http://internal.example.test/",
            "http://169.254.169.254/",
            "file:///etc/passwd",
        ],
    )
    async def test_loopback_permission_allows_plain_loopback_only(self, url: str) -> None:
        with pytest.raises(RefusedTarget):
            await check(url, LOOPBACK)

    @pytest.mark.parametrize(
        "url",
        [
            "http://0x7f000001/",
            "http://[::ffff:10.0.0.1]/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "gopher://10.0.0.1/",
            "http://user:pass@10.0.0.1/",
        ],
    )
    async def test_private_permission_still_refuses_what_is_never_a_target(self, url: str) -> None:
        with pytest.raises(RefusedTarget):
            await check(url, PRIVATE)


class TestMetadataAddresses:
    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.170.2/v2/credentials",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://100.100.100.200/latest/meta-data/",
        ],
    )
    async def test_they_stay_refused_where_private_targets_are_allowed(self, url: str) -> None:
        with pytest.raises(RefusedTarget, match="instance-metadata"):
            await check(url, PRIVATE)

    async def test_one_listed_is_allowed_with_private_targets(self) -> None:
        listed = TargetPolicy(
            allow_private=True,
            allowed_metadata=frozenset({ipaddress.ip_address("169.254.169.254")}),
        )

        assert await check("http://169.254.169.254/", listed) == "169.254.169.254"
        with pytest.raises(RefusedTarget):
            await check("http://169.254.169.254/", STRICT)


class TestAllowedTargets:
    @pytest.mark.parametrize(
        ("url", "address"),
        [
            ("https://example.com/hooks", "93.184.216.34"),
            ("https://EXAMPLE.com./hooks", "93.184.216.34"),
            ("http://93.184.216.34:8080/x", "93.184.216.34"),
            ("http://[2606:2800:220:1:248:1893:25c8:1946]/", "2606:2800:220:1:248:1893:25c8:1946"),
        ],
    )
    async def test_public_addresses_are_allowed(self, url: str, address: str) -> None:
        assert await check(url, STRICT) == address

    @pytest.mark.parametrize(
        ("url", "address"),
        [
            ("http://127.0.0.1:8000/hooks", "127.0.0.1"),
            ("http://localhost:8000/hooks", "127.0.0.1"),
            ("http://[::1]:8000/", "::1"),
        ],
    )
    async def test_loopback_when_allowed(self, url: str, address: str) -> None:
        assert await check(url, LOOPBACK) == address

    @pytest.mark.parametrize(
        "url", ["http://10.0.0.1/", "http://internal.example.test/", "http://[fd00::1]/"]
    )
    async def test_private_networks_when_allowed(self, url: str) -> None:
        assert ipaddress.ip_address(await check(url, PRIVATE)).is_private


class TestPinnedResolution:
    async def test_the_request_goes_to_the_checked_address_with_the_name_kept(self) -> None:
        target = await resolve(
            parse("https://example.com:8443/hooks?x=1#frag", STRICT), STRICT, fake_resolver
        )

        assert str(target.url) == "https://93.184.216.34:8443/hooks?x=1"
        assert target.host_header == "example.com:8443"
        assert target.sni_hostname == "example.com"

    async def test_a_name_is_resolved_once_so_a_rebinding_answer_is_never_used(self) -> None:
        answers = [["93.184.216.34"], ["127.0.0.1"]]

        async def rebinding(host: str, port: int) -> Sequence[str]:
            del host, port
            return answers.pop(0)

        target = await resolve(parse("http://rebind.example.test/", STRICT), STRICT, rebinding)

        assert str(target.address) == "93.184.216.34"
        assert target.url.host == "93.184.216.34"
        assert answers == [["127.0.0.1"]]

    async def test_an_address_literal_needs_no_resolution_and_no_sni(self) -> None:
        async def no_dns(host: str, port: int) -> Sequence[str]:
            raise AssertionError(f"resolved {host}:{port}")

        target = await resolve(parse("https://93.184.216.34/", STRICT), STRICT, no_dns)

        assert target.sni_hostname is None
        assert target.host_header == "93.184.216.34"


class TestRefusalMessages:
    async def test_a_refused_name_is_named_but_not_what_it_resolved_to(self) -> None:
        with pytest.raises(RefusedTarget) as refused:
            await check("http://internal.example.test/", STRICT)

        assert str(refused.value) == (
            "internal.example.test resolves to an address webhooks may not reach"
        )
        assert "10.0.0.1" not in str(refused.value)
        assert "private" not in str(refused.value)

    def test_an_obfuscated_number_is_refused_as_such(self) -> None:
        with pytest.raises(RefusedTarget, match="four decimal numbers"):
            parse("http://2130706433/", PRIVATE)
