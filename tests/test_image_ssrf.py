"""The image fetch connects only to the address it checked (no DNS rebinding), and only public addresses pass.

No ``responses`` here: the fetch runs through the real ``requests``/urllib3 stack down to
the socket. ``socket.socket.connect`` is replaced by a recorder (the test network) that
refuses every connection, except that chosen public addresses are carried to a local TLS
server whose certificate is valid for ``*.trakt.test`` names only. ``socket.getaddrinfo``
answers host names from a fake DNS that can change its answer between lookups.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import ipaddress
import re
import socket
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.cache import cache
from django.core.files.storage import storages
from django.urls import reverse

from django_trakt.exceptions import ImageRefused
from django_trakt.internal.pages import image_fetch, images
from django_trakt.internal.pages.image_fetch import fetch_image
from django_trakt.internal.pages.image_sources import is_public_address
from django_trakt.testing.images import poster_png

pytestmark = pytest.mark.django_db

PNG = poster_png("pinned")
PUBLIC_A = "93.184.216.34"
PUBLIC_B = "93.184.216.35"
PUBLIC_V6 = "2606:4700:4700::1111"
#: Names the local server's certificate is valid for; ``wrong.trakt.test`` is not one of them.
CERT_NAMES = ["img.trakt.test", "alt.trakt.test", "rebind.trakt.test"]


# -- a certificate authority and a local TLS image host ------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, private_format = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, private_format, serialization.NoEncryption())


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(CA file, server certificate, server key): strict enough for Python 3.13's X509_STRICT."""
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("django-trakt test CA"))
        .issuer_name(_name("django-trakt test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(CERT_NAMES[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in CERT_NAMES]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_pem(key))
    return ca_file, cert_file, key_file


class ImageHost(ThreadingHTTPServer):
    """A local https image host that records the SNI names and Host headers it is sent."""

    daemon_threads = True

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        super().__init__(("127.0.0.1", 0), _ImageHandler)
        self.sni: list[str | None] = []
        self.hosts: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda _sock, name, _context: self.sni.append(name)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up after a failed certificate check is expected here


class _ImageHandler(BaseHTTPRequestHandler):
    server: ImageHost

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers.get("Host", ""))
        if self.path == "/p.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
            return
        targets = {"/hop": "https://alt.trakt.test/p.png", "/hop-rebind": "https://rebind.trakt.test/p.png"}
        self.send_response(302 if self.path in targets else 404)
        if self.path in targets:
            self.send_header("Location", targets[self.path])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:
        pass


@contextlib.contextmanager
def serving_with_test_ca(server, ca_file, monkeypatch):
    """``server`` running in a thread, and the fetch trusting the test CA (nothing else changes)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    pinned_session = image_fetch._pinned_session

    def trusting_test_ca(address: str):
        session = pinned_session(address)
        session.verify = str(ca_file)
        return session

    monkeypatch.setattr(image_fetch, "_pinned_session", trusting_test_ca)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def image_host(certificates, monkeypatch):
    """The running local image host; the fetch trusts the test CA (and nothing else changes)."""
    ca_file, cert_file, key_file = certificates
    with serving_with_test_ca(ImageHost(cert_file, key_file), ca_file, monkeypatch) as server:
        yield server


# -- the test network: DNS and connect, both recorded -------------------------------------------------


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


class Network:
    """What the process resolves and connects to.

    ``answers[name]`` is a list of DNS answers: the first lookup gets the first, every
    later lookup the last (a rebinding name lists a public answer, then loopback).
    ``routes`` carries a public ``(address, 443)`` to the local server; every other
    connection is refused, after being recorded.
    """

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: Counter[str] = Counter()
        self.connects: list[tuple[str, int]] = []
        self.routes: dict[tuple[str, int], tuple[str, int]] = {}

    def resolve(self, host: str) -> list[str]:
        """The fake DNS, as a ``TRAKT_IMAGE_RESOLVER``."""
        self.lookups[host] += 1
        answers = self.answers.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[min(self.lookups[host], len(answers)) - 1]

    def route(self, address: str, server: ImageHost) -> None:
        self.routes[(address, 443)] = ("127.0.0.1", server.port)


@pytest.fixture
def network(monkeypatch, settings, tmp_path):
    net = Network()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host is None or _is_literal(str(host)):
            return real_getaddrinfo(host, port, family, type, proto, flags)
        infos = []
        for answer in net.resolve(str(host)):
            if ":" in answer:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer, port)))
        return infos

    def connect(sock, address):
        host, port = address[0], address[1]
        net.connects.append((host, port))
        if (host, port) in net.routes:
            return real_connect(sock, net.routes[(host, port)])
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"the test network refuses {host}:{port}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = [".trakt.test"]
    settings.TRAKT_IMAGE_RESOLVER = None  # the system resolver, i.e. the fake DNS above
    cache.clear()
    yield net
    cache.clear()


def poster_path(source: str) -> str:
    token = images.poster_token(source)
    assert token
    return reverse("django_trakt:poster", args=[token])


def is_default_poster(response) -> bool:
    return response.status_code == 200 and response.content == images.default_image(images.POSTER)


# -- DNS rebinding: the connection goes to the checked address ------------------------------------------


def test_rebinding_name_is_resolved_once_and_connected_at_the_checked_address(network, image_host):
    network.answers["img.trakt.test"] = [[PUBLIC_A], ["127.0.0.1"]]
    network.route(PUBLIC_A, image_host)
    assert fetch_image("https://img.trakt.test/p.png") == (PNG, "image/png")
    assert network.lookups == {"img.trakt.test": 1}  # a second lookup would have said 127.0.0.1
    assert network.connects == [(PUBLIC_A, 443)]
    # Only the TCP connection is pinned: TLS and HTTP still name the host.
    assert image_host.sni == ["img.trakt.test"] and image_host.hosts == ["img.trakt.test"]


def test_resolver_setting_is_the_only_lookup_and_its_address_is_the_one_connected(network, image_host, settings):
    dns = Network()
    dns.answers["img.trakt.test"] = [[PUBLIC_B], ["127.0.0.1"]]
    settings.TRAKT_IMAGE_RESOLVER = dns.resolve
    network.route(PUBLIC_B, image_host)
    assert fetch_image("https://img.trakt.test/p.png") == (PNG, "image/png")
    assert dns.lookups == {"img.trakt.test": 1}
    assert network.lookups == {}  # nothing asked the system DNS for the name
    assert network.connects == [(PUBLIC_B, 443)]


def test_every_redirect_hop_is_resolved_once_checked_and_pinned(network, image_host):
    network.answers["img.trakt.test"] = [[PUBLIC_A], ["127.0.0.1"]]
    network.answers["alt.trakt.test"] = [[PUBLIC_B], ["127.0.0.1"]]
    network.route(PUBLIC_A, image_host)
    network.route(PUBLIC_B, image_host)
    assert fetch_image("https://img.trakt.test/hop") == (PNG, "image/png")
    assert network.lookups == {"img.trakt.test": 1, "alt.trakt.test": 1}
    assert network.connects == [(PUBLIC_A, 443), (PUBLIC_B, 443)]
    assert image_host.sni == ["img.trakt.test", "alt.trakt.test"]
    assert image_host.hosts == ["img.trakt.test", "alt.trakt.test"]


def test_redirect_to_a_name_that_resolves_to_loopback_is_never_connected(network, image_host):
    network.answers["img.trakt.test"] = [[PUBLIC_A]]
    network.answers["rebind.trakt.test"] = [["127.0.0.1"]]
    network.route(PUBLIC_A, image_host)
    with pytest.raises(ImageRefused, match=re.escape("'rebind.trakt.test' resolves to a non-public address")):
        fetch_image("https://img.trakt.test/hop-rebind")
    assert network.connects == [(PUBLIC_A, 443)]


def test_certificate_is_checked_against_the_host_name_not_the_address(network, image_host):
    network.answers["wrong.trakt.test"] = [[PUBLIC_A]]
    network.route(PUBLIC_A, image_host)  # the right address, a certificate for other names
    with pytest.raises(ImageRefused, match="could not be reached: SSLError"):
        fetch_image("https://wrong.trakt.test/p.png")
    assert network.connects == [(PUBLIC_A, 443)] and image_host.sni == ["wrong.trakt.test"]
    assert image_host.hosts == []  # no request was sent over the unverified connection


def test_next_checked_address_is_tried_when_one_refuses(network, image_host):
    network.answers["img.trakt.test"] = [[PUBLIC_V6, PUBLIC_B, PUBLIC_A]]
    network.route(PUBLIC_A, image_host)
    assert fetch_image("https://img.trakt.test/p.png") == (PNG, "image/png")
    assert network.connects == [(PUBLIC_V6, 443), (PUBLIC_B, 443), (PUBLIC_A, 443)]
    assert network.lookups == {"img.trakt.test": 1}


def test_ipv4_mapped_public_address_is_connected_as_plain_ipv4(network, image_host):
    network.answers["img.trakt.test"] = [[f"::ffff:{PUBLIC_A}"]]
    network.route(PUBLIC_A, image_host)
    assert fetch_image("https://img.trakt.test/p.png") == (PNG, "image/png")
    assert network.connects == [(PUBLIC_A, 443)]


def test_nat64_address_of_a_public_ipv4_is_connected_as_is(network):
    network.answers["img.trakt.test"] = [["64:ff9b::5db8:d822"]]  # 64:ff9b::93.184.216.34
    with pytest.raises(ImageRefused, match="could not be reached: ConnectionError"):
        fetch_image("https://img.trakt.test/p.png")
    assert network.connects == [("64:ff9b::5db8:d822", 443)]


def test_proxy_environment_is_not_used_for_images(network, image_host, monkeypatch):
    # A proxy would resolve the name itself, after our check.
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    network.answers["img.trakt.test"] = [[PUBLIC_A]]
    network.route(PUBLIC_A, image_host)
    assert fetch_image("https://img.trakt.test/p.png") == (PNG, "image/png")
    assert network.connects == [(PUBLIC_A, 443)]


def test_poster_view_through_a_rebinding_name_serves_the_checked_hosts_image(network, image_host, client):
    network.answers["img.trakt.test"] = [[PUBLIC_A], ["127.0.0.1"]]
    network.route(PUBLIC_A, image_host)
    source = "https://img.trakt.test/p.png"
    response = client.get(poster_path(source))
    assert response.status_code == 200 and response.content == PNG
    assert storages["default"].exists(images.storage_name(source, images.POSTER))
    assert network.connects == [(PUBLIC_A, 443)] and network.lookups == {"img.trakt.test": 1}


# -- which addresses are public -------------------------------------------------------------------------

#: IANA's IPv4 special-purpose ranges: the first, a middle and the last address of each.
IPV4_SPECIAL = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
]


def _samples(network: str) -> list[str]:
    net = ipaddress.ip_network(network)
    return sorted({str(net[0]), str(net[net.num_addresses // 2]), str(net[-1])}, key=ipaddress.ip_address)


IPV4_REFUSED = [address for network in IPV4_SPECIAL for address in _samples(network)]

#: IPv6 forms that embed a non-public IPv4 address (judged by what they embed).
EMBEDDED_NON_PUBLIC = {
    "mapped-loopback": "::ffff:127.0.0.1",
    "mapped-private": "::ffff:10.0.0.1",
    "mapped-metadata": "::ffff:169.254.169.254",
    "mapped-this-network": "::ffff:0.0.0.0",
    "mapped-cgnat": "::ffff:100.64.0.1",
    "nat64-loopback": "64:ff9b::127.0.0.1",
    "nat64-private": "64:ff9b::10.0.0.1",
    "nat64-metadata": "64:ff9b::169.254.169.254",
    "nat64-192-168": "64:ff9b::192.168.0.1",
    "nat64-documentation": "64:ff9b::192.0.2.1",
}

#: IPv6 forms refused outright, whatever IPv4 address they embed (public ones included).
REFUSED_OUTRIGHT = {
    "ipv4-compatible-loopback": "::127.0.0.1",
    "ipv4-compatible-private": "::10.0.0.1",
    "ipv4-compatible-public": "::8.8.8.8",
    "siit-translated": "::ffff:0:7f00:1",
    "nat64-local-use-loopback": "64:ff9b:1::7f00:1",
    "nat64-local-use-public": "64:ff9b:1::808:808",
    "6to4-loopback": "2002:7f00:1::1",
    "6to4-metadata": "2002:a9fe:a9fe::1",
    "6to4-public": "2002:808:808::1",
    "teredo-server-loopback": "2001:0:7f00:1::1",
    "teredo-client-loopback": "2001:0:4136:e378:8000:63bf:80ff:fffe",
    "teredo-public": "2001:0:808:808::1",
}

IPV6_SPECIAL = {
    "unspecified": "::",
    "loopback": "::1",
    "reserved-by-ietf": "::1:2:3",
    "discard-only": "100::1",
    "dummy-prefix": "100:0:0:1::1",
    "pcp-anycast": "2001:1::1",
    "benchmarking": "2001:2::1",
    "amt": "2001:3::1",
    "as112-v6": "2001:4:112::1",
    "orchid": "2001:10::1",
    "orchid-v2": "2001:20::1",
    "drone-remote-id": "2001:30::1",
    "documentation": "2001:db8::1",
    "documentation-3fff": "3fff::1",
    "as112-direct-delegation": "2620:4f:8000::1",
    "srv6-sids": "5f00::1",
    "unique-local-fc": "fc00::1",
    "unique-local-fd": "fd12:3456::1",
    "link-local": "fe80::1",
    "link-local-with-zone": "fe80::1%eth0",
    "site-local": "fec0::1",
    "site-local-last": "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "multicast-link": "ff02::1",
    "multicast-global": "ff0e::1",
    "outside-global-unicast": "4000::1",
    "public-with-zone": "2606:4700:4700::1111%eth0",
}

NOT_ADDRESSES = ["", "not-an-address", "1.2.3", "93.184.216.34.5", "::ffff:999.0.0.1", "[::1]"]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    PUBLIC_A,
    "1.0.0.1",
    "100.63.255.255",  # just below shared address space
    "100.128.0.1",  # just above it
    "172.15.255.255",
    "172.32.0.1",
    "198.17.255.255",
    "198.20.0.1",
    "223.255.255.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2001:200::1",  # the first regular allocation after the IETF's 2001::/23
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",  # judged by the IPv4 address it maps
    "64:ff9b::8.8.8.8",  # NAT64 of a public address (DNS64 networks)
]


@pytest.mark.parametrize("address", IPV4_REFUSED)
def test_every_ipv4_special_range_is_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", EMBEDDED_NON_PUBLIC.values(), ids=EMBEDDED_NON_PUBLIC.keys())
def test_ipv6_forms_of_a_non_public_ipv4_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", REFUSED_OUTRIGHT.values(), ids=REFUSED_OUTRIGHT.keys())
def test_deprecated_and_tunnel_forms_are_refused_outright(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", IPV6_SPECIAL.values(), ids=IPV6_SPECIAL.keys())
def test_every_ipv6_special_range_is_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("value", [*NOT_ADDRESSES, None, 42])
def test_what_is_not_an_address_is_not_public(value):
    assert not is_public_address(value)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_accepted(address):
    assert is_public_address(address)
    assert is_public_address(ipaddress.ip_address(address))


def test_answers_do_not_depend_on_ipaddress_is_global(monkeypatch):
    # Python's own verdicts differ across 3.11-3.13; ours must not lean on them.
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        monkeypatch.setattr(cls, "is_global", property(lambda self: True))
        monkeypatch.setattr(cls, "is_private", property(lambda self: False))
    assert not any(is_public_address(a) for a in [*IPV4_REFUSED, *REFUSED_OUTRIGHT.values(), *IPV6_SPECIAL.values()])
    assert not any(is_public_address(a) for a in EMBEDDED_NON_PUBLIC.values())
    assert all(is_public_address(a) for a in PUBLIC)


# -- end to end: a host resolving to any of them gets the default image, and no connection ------------------

END_TO_END = {
    **EMBEDDED_NON_PUBLIC,
    **REFUSED_OUTRIGHT,
    **IPV6_SPECIAL,
    "v4-loopback": "127.0.0.1",
    "v4-metadata": "169.254.169.254",
    "v4-private": "192.168.1.10",
    "v4-cgnat": "100.64.0.1",
    "v4-this-network": "0.0.0.0",  # noqa: S104 - an address DNS answers, not a bind
    "v4-broadcast": "255.255.255.255",
    "v4-benchmarking": "198.18.0.1",
}


@pytest.mark.parametrize("address", END_TO_END.values(), ids=END_TO_END.keys())
def test_host_resolving_to_a_non_public_address_gets_the_default_poster_and_no_connection(
    network, client, settings, address
):
    network.answers["img.trakt.test"] = [[address]]
    source = "https://img.trakt.test/p.png"
    with pytest.raises(ImageRefused, match="resolves to a non-public address"):
        fetch_image(source)
    network.answers["img.trakt.test"] = [[PUBLIC_A, address]]  # one bad answer among good ones
    assert is_default_poster(client.get(poster_path(source)))
    assert not storages["default"].exists(images.storage_name(source, images.POSTER))
    assert network.connects == []
    assert network.lookups == {"img.trakt.test": 2}
