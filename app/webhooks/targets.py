"""Where webhooks may go (SSRF protection): URL rules, address rules, and a pinned resolution.

A URL is refused before any connection when its scheme is not http or https, it carries
credentials, its host is an obfuscated number (`2130706433`, `0x7f000001`, `127.1`), has a zone
id, is a localhost name, or is an address literal outside the allowed ranges. At delivery the
host is resolved once, every address it resolves to must be allowed, and the request connects to
the address that was checked (the `Host` header and TLS SNI keep the name), so a DNS answer that
changes in between (rebinding) cannot redirect it. Redirects are never followed (see `sender`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from app.core.config import WebhookSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# `(host, port) -> addresses`; tests inject their own (no real DNS in tests).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

MAX_URL_LENGTH = 2048
_SCHEMES = {"http": 80, "https": 443}
_LOCALHOST_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)
# WHATWG: a host whose last label is a number is an IPv4 address; we accept only a.b.c.d.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")  # both matched whole (fullmatch)
_DOTTED_QUAD = re.compile(
    r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IANA special-purpose ranges that not every Python version counts as non-global.
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fec0::/10",
    )
)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# Instance-metadata services of the clouds (credentials of the host's role): refused even where
# private targets are allowed, unless listed in `webhooks.allowed_metadata_addresses`.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)


class TargetError(Exception):
    """This URL cannot be delivered to; the message says why (shown in the delivery log)."""


class RefusedTarget(TargetError):
    """The URL or an address it resolves to is not allowed."""


class UnresolvableTarget(TargetError):
    """The host name does not resolve (now)."""


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    allow_loopback: bool = False
    allowed_metadata: frozenset[IPAddress] = frozenset()

    @classmethod
    def of(cls, settings: WebhookSettings) -> TargetPolicy:
        return cls(
            allow_private=settings.allow_private_targets,
            allow_loopback=settings.allow_loopback,
            allowed_metadata=frozenset(settings.allowed_metadata_addresses),
        )


@dataclass(frozen=True)
class WebhookUrl:
    """A URL that passed the static checks."""

    url: httpx.URL
    host: str  # ASCII (IDNA) and lowercase, as resolved
    port: int
    address: IPAddress | None  # the host, when it is an address literal


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the checked address, with the name for `Host` and TLS."""

    address: IPAddress
    url: httpx.URL  # the original URL with the address in place of the host
    host_header: str
    sni_hostname: str | None


def parse(raw: str, policy: TargetPolicy) -> WebhookUrl:
    """The URL if it may receive webhooks as far as can be told without DNS; else `RefusedTarget`."""
    if len(raw) > MAX_URL_LENGTH:
        raise RefusedTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in raw):
        raise RefusedTarget("the URL must not contain spaces or control characters")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise RefusedTarget(f"not a valid URL: {exc}") from None
    if url.scheme not in _SCHEMES:
        raise RefusedTarget("only http and https URLs can receive webhooks")
    if url.userinfo:
        raise RefusedTarget("the URL must not contain credentials (user:password@)")
    host = url.raw_host.decode("ascii").lower()
    if not host:
        raise RefusedTarget("the URL has no host")
    if "%" in host:
        raise RefusedTarget("the host must not contain a zone id or escapes")
    port = url.port if url.port is not None else _SCHEMES[url.scheme]
    if not 1 <= port <= 65535:
        raise RefusedTarget("the port must be between 1 and 65535")
    name = host.removesuffix(".")
    address = _literal_address(name)
    if address is not None:
        reason = refusal(address, policy)
        if reason is not None:
            raise RefusedTarget(f"{address} {reason}")
    elif (name in _LOCALHOST_NAMES or name.endswith(".localhost")) and not (
        policy.allow_loopback or policy.allow_private
    ):
        raise RefusedTarget(f"{name} is a loopback name")
    return WebhookUrl(url=url, host=host, port=port, address=address)


def _literal_address(name: str) -> IPAddress | None:
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name)
        except ValueError:
            raise RefusedTarget(f"{name} is not a valid IPv6 address") from None
    if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        if not _DOTTED_QUAD.fullmatch(name):
            raise RefusedTarget(
                f"{name} is not a plain IPv4 address: write it as four decimal numbers, a.b.c.d"
            )
        return ipaddress.IPv4Address(name)
    return None


def refusal(address: IPAddress, policy: TargetPolicy) -> str | None:
    """Why webhooks may not go to `address` (a phrase to follow it), or None when they may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "has a zone id"
        if address.ipv4_mapped is not None:
            return "is an IPv4-mapped IPv6 address; use the IPv4 address itself"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal(embedded, policy)
            if reason is not None:
                return f"embeds {embedded}, which {reason}"
    if address.is_unspecified:
        return "is the unspecified address"
    if address.is_multicast:
        return "is a multicast address"
    if address == _BROADCAST:
        return "is the broadcast address"
    if address.is_loopback:
        return None if policy.allow_loopback or policy.allow_private else "is a loopback address"
    if address in METADATA_ADDRESSES and address not in policy.allowed_metadata:
        return "is a cloud instance-metadata address"
    if policy.allow_private:
        return None
    if address.is_link_local:
        return "is a link-local address"
    if address.is_private:
        return "is a private address"
    if address.is_reserved:
        return "is a reserved address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "is a site-local address"
    if not address.is_global or any(address in network for network in _SPECIAL_PURPOSE):
        return "is not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address leads to."""
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


async def system_resolver(host: str, port: int) -> Sequence[str]:
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in found]


async def resolve(
    target: WebhookUrl, policy: TargetPolicy, resolver: Resolver = system_resolver
) -> Target:
    """Resolve the host once and check every address; connect to the first one."""
    if target.address is not None:
        addresses: list[IPAddress] = [target.address]
    else:
        try:
            found = await resolver(target.host, target.port)
        except OSError as exc:
            raise UnresolvableTarget(f"{target.host} does not resolve: {exc}") from None
        addresses = []
        for text in found:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                raise RefusedTarget(f"{target.host} does not resolve to an address") from None
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise UnresolvableTarget(f"{target.host} resolves to no address")
        # Never which address, nor what kind: the answer would tell an admin what names of the
        # network the workers run in point at (a DNS oracle through `last_error`).
        if any(refusal(address, policy) is not None for address in addresses):
            raise RefusedTarget(f"{target.host} resolves to an address webhooks may not reach")
    address = addresses[0]
    named = target.address is None
    return Target(
        address=address,
        url=target.url.copy_with(host=str(address), fragment=None),
        host_header=target.url.netloc.decode("ascii"),
        sni_hostname=target.host.removesuffix(".")
        if named and target.url.scheme == "https"
        else None,
    )
