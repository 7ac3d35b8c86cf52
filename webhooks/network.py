"""Which addresses a webhook may reach: public ones, and the networks settings allow.

A URL is checked when a subscription is created and again before every request, because what a
name resolves to changes. A plain-http request then goes to the address that was checked (the
name stays in the Host header), so a name cannot resolve to a public address for the check and
to a private one for the connection. An https request goes to the name: one that resolved
elsewhere in between reaches no more than a TLS handshake there, which fails unless that host
holds a certificate for the name, and nothing is sent before it succeeds; connections are then
kept per name, each with its own SNI, as virtual hosts behind one address need.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from webhooks.exceptions import UrlRefused

type Address = ipaddress.IPv4Address | ipaddress.IPv6Address
type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A URL checked for sending: where to connect, and what to say the host is."""

    url: str  # http: with the checked address in place of the host name
    host_header: str | None  # http: the name, with the port if the URL gave one


def allowed_networks() -> list[Network]:
    return [ipaddress.ip_network(cidr) for cidr in settings.WEBHOOKS_ALLOWED_NETWORKS]


def address_allowed(address: Address, networks: list[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address.version == network.version and address in network for network in networks):
        return True
    return address.is_global and not address.is_multicast


def split(url: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, host and port; refuses what is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"The URL is not valid: {error}.") from None
    if parts.scheme not in SCHEMES:
        raise UrlRefused("The URL must start with http:// or https://.")
    host = parts.hostname
    if not host:
        raise UrlRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(
            "The URL must not hold credentials; receivers authenticate webhooks by their signature."
        )
    return parts, host, port or SCHEMES[parts.scheme]


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address the name resolves to (blocking)."""
    if (literal := _literal(host)) is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def aresolve(host: str, port: int) -> list[Address]:
    if (literal := _literal(host)) is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _checked(host: str, addresses: list[Address]) -> Address:
    if not addresses:
        raise UrlRefused(f"The URL's host {host!r} resolves to no address.")
    networks = allowed_networks()
    refused = [address for address in addresses if not address_allowed(address, networks)]
    if refused:
        raise UrlRefused(
            f"The URL's host {host!r} resolves to {refused[0]}, which is not a public "
            "address; webhooks only go to public addresses."
        )
    return addresses[0]


def check_url(url: str) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to any non-public address."""
    _, host, port = split(url)
    try:
        addresses = resolve(host, port)
    except OSError as error:
        raise UrlRefused(f"The URL's host {host!r} cannot be resolved: {error.strerror}.") from None
    _checked(host, addresses)


async def atarget(url: str) -> Target:
    """Check the URL as it resolves now, and pin the request to the checked address."""
    parts, host, port = split(url)
    try:
        addresses = await aresolve(host, port)
    except OSError as error:
        raise UrlRefused(f"The URL's host {host!r} cannot be resolved: {error.strerror}.") from None
    address = _checked(host, addresses)
    if parts.scheme == "https":
        return Target(url=url, host_header=None)
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return Target(
        url=parts._replace(netloc=netloc).geturl(),
        host_header=parts.netloc.rsplit("@", 1)[-1],
    )
