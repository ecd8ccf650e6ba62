"""The HTTPS front: Caddy in front of the proxy and Open WebUI when the stack is exposed.

With `expose: true` the proxy and Open WebUI listen on 127.0.0.1 only, and Caddy, run as the
stack's `front` service, is the one listener on the network: `tls.port` serves the proxy
and `tls.openwebui_port` Open WebUI, both over HTTPS, nothing over plain HTTP.

The service runs `stackctl front run`, which writes the Caddyfile from stack.yaml into
`<data dir>/caddy/` and then becomes `caddy run` (exec), so the front always matches the
config it starts with and a new address of the machine needs a restart, not a new unit.

Certificates (`tls`): neither `domain` nor `cert` gives `tls internal`, Caddy's own local CA
(its root in `<data dir>/caddy/pki/authorities/local/root.crt`), with a certificate for each
name this machine answers to (host name, `<host>.local`, its addresses, localhost);
`domain` gives a public certificate over ACME; `cert` and `key` serve those files.

What Caddy is told besides the sites (Caddy 2.6, the Debian 12 package; caddyserver.com
docs, "Global options"): `admin off` (its API would otherwise listen on localhost:2019,
where two stacks collide and any local user could replace the config),
`storage` under our data dir, `auto_https disable_redirects` (no plain-HTTP listener
on :80 redirecting to HTTPS), `skip_install_trust` (Caddy would add its root to the system
trust store, asking for sudo; stackctl never does that, nor runs `caddy trust`), and the
proxy's header timeout as `read_header` (a client that never finishes its request head is
dropped, as the proxy itself does).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from stackctl.config.model import Config

LOOPBACK = "127.0.0.1"


def machine_names(hostname: str | None = None, addresses: Iterable[str] | None = None) -> list[str]:
    """The names clients may use for this machine, for `tls internal`'s certificates: its
    host name and `<host>.local` (mDNS), its addresses, and the loopback ones."""
    host = (hostname if hostname is not None else socket.gethostname()).strip().lower()
    names = []
    if host:
        names.append(host)
        if "." not in host:
            names.append(f"{host}.local")
    names += list(addresses if addresses is not None else machine_addresses(host))
    names += ["localhost", LOOPBACK, "::1"]
    return list(dict.fromkeys(names))


def machine_addresses(hostname: str) -> list[str]:
    """This machine's non-loopback IP addresses, as far as the standard library can tell:
    the one its default route leaves from (a UDP "connect" sends nothing), and what its host
    name resolves to."""
    found: list[str] = []
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                found.append(sock.getsockname()[0])
        except OSError:
            continue
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP) if hostname else []
    except OSError:
        infos = []
    found += [str(info[4][0]) for info in infos]
    return [a for a in dict.fromkeys(found) if not _loopback(a) and "%" not in a]


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def _site(names: list[str], port: int) -> str:
    """A Caddyfile site address list: `https://name:port, https://[v6]:port`."""
    return ", ".join(f"https://[{n}]:{port}" if ":" in n else f"https://{n}:{port}" for n in names)


def caddyfile(config: Config, storage: Path, names: list[str]) -> str:
    """The front's Caddyfile for this config: Caddy's storage (its CA, certificates) in
    `storage` (`Paths.caddy_data`), certificates for `names` (see `machine_names`)."""
    tls = config.tls
    if tls.mode == "internal":
        site_names, tls_line = names, "tls internal"
    elif tls.mode == "acme":
        site_names, tls_line = [tls.domain], ""
    else:
        site_names = [tls.domain] if tls.domain else []
        cert, key = (str(Path(p).expanduser()) for p in (tls.cert, tls.key))
        tls_line = f"tls {_quoted(cert)} {_quoted(key)}"
    backends = [(tls.port, config.proxy.port, "the proxy")]
    if config.openwebui.enabled:
        backends.append((tls.openwebui_port, config.openwebui.port, "Open WebUI"))
    header_timeout = f"{max(1, round(config.proxy.header_timeout))}s"
    lines = [
        "# Written by `stackctl front run` from stack.yaml at every start of the front:",
        "# do not edit, change stack.yaml's `tls` section instead.",
        "{",
        "\tadmin off",
        f"\tstorage file_system {_quoted(str(storage))}",
        "\tauto_https disable_redirects",
        "\tskip_install_trust",
        "\tservers {",
        "\t\ttimeouts {",
        f"\t\t\tread_header {header_timeout}",
        "\t\t\tidle 5m",
        "\t\t}",
        "\t}",
        "}",
    ]
    for public, port, what in backends:
        address = _site(site_names, public) if site_names else f":{public}"
        lines += ["", f"# {what}", address + " {"]
        if tls_line:
            lines.append(f"\t{tls_line}")
        lines += [
            f"\treverse_proxy {LOOPBACK}:{port} {{",
            "\t\tflush_interval -1",  # streamed answers pass chunk by chunk
            "\t}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def certificate_expiry(port: int, server_name: str | None, timeout: float = 2.0) -> datetime:
    """When the certificate the front serves on loopback `port` expires (read from the
    handshake, not verified: `status` reports what is served, whoever issued it).
    Raises OSError (ssl.SSLError included) when there is no TLS answer."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the front sent no certificate")
    return not_after(der)


def not_after(der: bytes) -> datetime:
    """The notAfter time of a DER certificate (RFC 5280 section 4.1: Certificate ->
    tbsCertificate -> [version], serialNumber, signature, issuer, validity)."""
    _, body = _der_item(der, 0)  # Certificate
    _, tbs = _der_item(der, body)  # tbsCertificate
    at = tbs
    tag, _ = _der_item(der, at)
    skip = 4 if tag == 0xA0 else 3  # an explicit [0] version comes first in v3 certificates
    for _ in range(skip):
        at = _der_skip(der, at)
    _, validity = _der_item(der, at)
    after = _der_skip(der, validity)  # past notBefore
    tag, start = _der_item(der, after)
    end = _der_skip(der, after)
    text = der[start:end].decode("ascii")
    form = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"  # UTCTime / GeneralizedTime
    return datetime.strptime(text, form).replace(tzinfo=timezone.utc)


def _der_item(der: bytes, at: int) -> tuple[int, int]:
    """(tag, offset of the content) of the DER item at `at`."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        at += length & 0x7F
    return tag, at


def _der_skip(der: bytes, at: int) -> int:
    """The offset just past the DER item at `at`."""
    length = der[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    return start + length
