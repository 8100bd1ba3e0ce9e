"""Where partner webhooks may be sent: https:// to a public address only (http:// to loopback, and private
addresses, only when DIALER_WEBHOOKS_ALLOW_INSECURE is on, for trying it out). Checked when an endpoint is
created or changed and again before every delivery, since DNS can change in between: the host is resolved
and every address it resolves to must be public (private, loopback, link-local, the cloud metadata
address, multicast, reserved and unspecified are refused, and so are IPv6 addresses that
lead to such an IPv4 address: mapped, NAT64, 6to4, Teredo).

The addresses come from a resolver (anything with aiohttp's AbstractResolver.resolve; the system's
getaddrinfo when none is given): the composition gives the same one to these checks and to the sender's
connector, whose guard (dialer/delivery/guard.py) applies `check_addresses` to the very answer it connects to."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000


class UrlRefused(ValueError):
    """Why a URL may not receive webhooks (safe to show: it names the host, never a secret)."""


class HostUnresolvedNow(UrlRefused):
    """The resolver could not answer now (a temporary failure, EAI_AGAIN): the same URL may be fine in a moment."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits, reached through a translator: NAT64's
# well-known prefix (RFC 6052) and IPv4-translated addresses (RFC 2765). NAT64's local-use prefix (RFC 8215)
# is a network's own: never public.
_EMBEDDING_V4 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::ffff:0:0:0/96"))
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, NAT64, 6to4, Teredo's server-side), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _EMBEDDING_V4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        inner = _embedded_v4(address)
        if inner is not None and not _public(inner):  # 64:ff9b::a00:1 reaches 10.0.0.1 through NAT64
            return False
    return address.is_global and not address.is_multicast


def check_shape(url: str, allow_insecure: bool) -> str:
    """The URL's host, once its shape is acceptable (no resolution yet)."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"url must be a string of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("url is not a valid URL") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise UrlRefused("url must be an absolute https:// URL without credentials")
    if parts.scheme == "http" and not allow_insecure:
        raise UrlRefused("url must use https:// (http:// only for loopback, with DIALER_WEBHOOKS_ALLOW_INSECURE=true)")
    if port == 0:
        raise UrlRefused("url has an invalid port")
    return host


async def resolve(host: str, port: int, resolver=None) -> list[str]:
    try:
        if resolver is not None:
            found = await resolver.resolve(host, port, family=socket.AF_UNSPEC)
            return sorted({r["host"] for r in found})
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN:
            raise HostUnresolvedNow(f"the host {host} could not be resolved now (a temporary DNS failure)") from exc
        raise UrlRefused(f"the host {host} does not resolve") from exc
    return sorted({info[4][0] for info in infos})


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(address.split("%")[0])


def check_addresses(host: str, addresses: list[str], allow_insecure: bool) -> None:
    """UrlRefused unless every address the host resolved to may receive webhooks."""
    if not addresses:
        raise UrlRefused(f"the host {host} does not resolve")
    if not allow_insecure and not all(_public(_ip(a)) for a in addresses):
        raise UrlRefused(f"the host {host} resolves to a private, loopback, link-local or reserved address")


async def check_url(url: str, allow_insecure: bool, resolver=None) -> list[str]:
    """The addresses the URL's host resolves to, once each is allowed; else UrlRefused."""
    host = check_shape(url, allow_insecure)
    parts = urlsplit(url)
    addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80), resolver)
    if parts.scheme == "http" and not all(_ip(a).is_loopback for a in addresses):
        raise UrlRefused("http:// is allowed for loopback addresses only")
    check_addresses(host, addresses, allow_insecure)
    return addresses
