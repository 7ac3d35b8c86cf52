"""Where webhooks may go: public addresses, and the networks settings allow; http(s) only."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from webhooks import network
from webhooks.exceptions import UrlRefused


@pytest.fixture
def fake_dns(monkeypatch: Any) -> dict[str, str | None]:
    """Names the tests make up, resolved without a network (None: no such name); other names
    as usual."""
    names: dict[str, str | None] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            address = names[host]
            if address is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/hook",
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8080/hook",
        "http://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_non_public_addresses_are_refused(settings: Any, url: str) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    with pytest.raises(UrlRefused, match="not a public address"):
        network.check_url(url)


def test_a_name_that_resolves_to_loopback_is_refused(settings: Any, fake_dns: Any) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    fake_dns["hooks.example.com"] = "127.0.0.1"
    with pytest.raises(UrlRefused, match=r"host 'hooks\.example\.com' resolves to 127\.0\.0\.1"):
        network.check_url("https://hooks.example.com/in")


def test_a_name_with_a_public_address_is_accepted(settings: Any, fake_dns: Any) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    fake_dns["hooks.example.com"] = "93.184.215.14"
    network.check_url("https://hooks.example.com/in")


def test_allowed_networks_open_exactly_what_they_name(settings: Any) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = ["127.0.0.1/32", "10.0.0.0/8"]
    network.check_url("http://127.0.0.1:8000/hook")
    network.check_url("http://10.20.30.40/hook")
    with pytest.raises(UrlRefused):
        network.check_url("http://127.0.0.2/hook")
    with pytest.raises(UrlRefused):
        network.check_url("http://[::1]/hook")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("http:///hook", "no host"),
        ("http://user:pw@example.com/hook", "credentials"),
        ("http://example.com:99999/hook", "not valid"),
    ],
)
def test_what_is_not_an_http_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(UrlRefused, match=message):
        network.check_url(url)


def test_an_unresolvable_name_is_refused(fake_dns: Any) -> None:
    fake_dns["no-such-host.invalid"] = None
    with pytest.raises(UrlRefused, match="cannot be resolved"):
        network.check_url("http://no-such-host.invalid/hook")


async def test_a_plain_http_request_goes_to_the_checked_address_under_the_name(
    settings: Any, fake_dns: Any
) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    fake_dns["hooks.example.com"] = "93.184.215.14"
    target = await network.atarget("http://hooks.example.com:8080/in?x=1")
    assert target.url == "http://93.184.215.14:8080/in?x=1"
    assert target.host_header == "hooks.example.com:8080"
    fake_dns["hooks.example.com"] = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
    target = await network.atarget("http://hooks.example.com/in")
    assert target.url == "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/in"
    assert target.host_header == "hooks.example.com"


async def test_an_https_request_goes_to_the_name_once_checked(settings: Any, fake_dns: Any) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    fake_dns["hooks.example.com"] = "93.184.215.14"
    target = await network.atarget("https://hooks.example.com:8443/in")
    assert (target.url, target.host_header) == ("https://hooks.example.com:8443/in", None)
    fake_dns["hooks.example.com"] = "10.0.0.7"
    with pytest.raises(UrlRefused, match="not a public address"):
        await network.atarget("https://hooks.example.com:8443/in")


async def test_a_name_that_now_resolves_to_loopback_is_refused_at_delivery(
    settings: Any, fake_dns: Any
) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    fake_dns["hooks.example.com"] = "::1"
    with pytest.raises(UrlRefused, match="not a public address"):
        await network.atarget("http://hooks.example.com/in")
