"""Webhook URLs: http(s) only, and no loopback, private, link-local or reserved address
unless the operator allows it — checked on resolution and again on the connected peer."""

import http.server
import threading

import pytest

from algohost.errors import WebhookRefused
from algohost.webhooks.delivery import HttpPoster
from algohost.webhooks.urls import check_url, is_public, parse_url, refused_literal

REFUSED = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
           "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
           "::ffff:127.0.0.1", "64:ff9b::7f00:1", "192.0.2.1"]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


def resolver(*addresses):
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        return list(addresses)

    resolve.calls = calls
    return resolve


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_public(address):
    assert is_public(address)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "example.com",
                                 "http:///path", "https://example.com:port/"])
def test_only_absolute_http_urls_with_a_host(url):
    with pytest.raises(WebhookRefused):
        parse_url(url)


def test_a_name_resolving_to_a_private_address_is_refused():
    with pytest.raises(WebhookRefused, match="10.0.0.7"):
        check_url("https://hooks.example/x", False, resolver("10.0.0.7"))


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(WebhookRefused):
        check_url("https://hooks.example/x", False, resolver("93.184.216.34", "127.0.0.1"))


def test_public_resolution_passes_with_the_default_port():
    resolve = resolver("93.184.216.34")
    check_url("https://hooks.example/x", False, resolve)
    assert resolve.calls == [("hooks.example", 443)]


def test_the_opt_in_allows_private_addresses_without_resolving():
    resolve = resolver("127.0.0.1")
    check_url("http://localhost:8080/x", True, resolve)
    assert resolve.calls == []


def test_submit_time_check_refuses_private_literals_only():
    with pytest.raises(WebhookRefused):
        refused_literal("http://169.254.169.254/latest/meta-data", False)
    with pytest.raises(WebhookRefused):
        refused_literal("http://[::1]:9000/", False)
    refused_literal("http://hooks.example/x", False)  # names wait for delivery
    refused_literal("http://127.0.0.1:9000/", True)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def local_receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://rebound.test:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_a_name_that_rebinds_to_loopback_is_refused_at_connect(local_receiver, monkeypatch):
    # The check sees a public address; the connection then lands on 127.0.0.1.
    import socket

    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        return real("127.0.0.1" if host == "rebound.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    poster = HttpPoster(allow_private=False, resolve=resolver("93.184.216.34"))
    result = poster.post(local_receiver, b"{}", {})
    assert result.refused and "127.0.0.1" in (result.error or "")


def test_the_same_receiver_is_reached_with_the_opt_in(local_receiver, monkeypatch):
    import socket

    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **k: real("127.0.0.1" if host == "rebound.test"
                                                   else host, *a, **k))
    result = HttpPoster(allow_private=True).post(local_receiver, b"{}", {})
    assert result.ok, result
