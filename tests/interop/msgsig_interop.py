#!/usr/bin/env python3
"""Interoperability driver for datagate's msgsig module, on the independent Python
implementation `http-message-signatures` (pip install http-message-signatures requests).

Usage:
  msgsig_interop.py sign ALG KEYFILE      < request.http > signed.http
  msgsig_interop.py verify ALG PUBKEYFILE < signed.http     (exit 0: valid, 1: not)

`sign` reads an HTTP/1.1 request on stdin and writes it back with Signature-Input and
Signature (label sig1) covering @method, @target-uri, content-digest, x-road-client,
x-road-id and x-purpose, with created (now), expires (now + 300 s), a random nonce,
keyid "interop-key" and alg. `verify` checks the sig1 signature, requires the same
components, and checks the Content-Digest against the body. The target URI of an
origin-form request is https://{Host}{target}, as in datagate.
"""

import datetime
import secrets
import sys

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import ECDSA_P256_SHA256, ED25519, RSA_PSS_SHA512, RSA_V1_5_SHA256

ALGORITHMS = {
    "ecdsa-p256-sha256": ECDSA_P256_SHA256,
    "rsa-pss-sha512": RSA_PSS_SHA512,
    "rsa-v1_5-sha256": RSA_V1_5_SHA256,
    "ed25519": ED25519,
}
COMPONENTS = ("@method", "@target-uri", "content-digest", "x-road-client", "x-road-id", "x-purpose")
KEY_ID = "interop-key"


class FileKeyResolver(HTTPSignatureKeyResolver):
    def __init__(self, path):
        with open(path, "rb") as fh:
            self.pem = fh.read()

    def resolve_private_key(self, key_id):
        if key_id != KEY_ID:
            raise KeyError(key_id)
        return load_pem_private_key(self.pem, password=None)

    def resolve_public_key(self, key_id):
        if key_id != KEY_ID:
            raise KeyError(key_id)
        return load_pem_public_key(self.pem)


def read_request(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    method, target, _version = lines[0].split(" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    length = next((int(v) for n, v in headers if n.lower() == "content-length"), None)
    if length is not None:
        body = body[:length]
    host = next(v for n, v in headers if n.lower() == "host")
    url = target if target.startswith("http") else f"https://{host}{target}"
    request = requests.Request(method, url, headers=dict(headers), data=body).prepare()
    return request, target


def request_body(request):
    body = request.body or b""
    return body.encode("latin-1") if isinstance(body, str) else body


def write_request(request, target):
    out = [f"{request.method} {target} HTTP/1.1"]
    out += [f"{name}: {value}" for name, value in request.headers.items()]
    body = request_body(request)
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body


def main(argv):
    if len(argv) != 4 or argv[1] not in ("sign", "verify") or argv[2] not in ALGORITHMS:
        print(__doc__, file=sys.stderr)
        return 2
    mode, alg, keyfile = argv[1], ALGORITHMS[argv[2]], argv[3]
    request, target = read_request(sys.stdin.buffer.read())
    resolver = FileKeyResolver(keyfile)
    if mode == "sign":
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        HTTPMessageSigner(signature_algorithm=alg, key_resolver=resolver).sign(
            request,
            key_id=KEY_ID,
            created=now,
            expires=now + datetime.timedelta(seconds=300),
            nonce=secrets.token_urlsafe(16),
            label="sig1",
            include_alg=True,
            covered_component_ids=COMPONENTS,
            body=request_body(request),
            use_existing_digest=True,
        )
        sys.stdout.buffer.write(write_request(request, target))
        return 0
    try:
        body = request_body(request)
        results = HTTPMessageVerifier(signature_algorithm=alg, key_resolver=resolver).verify(
            request,
            require_components=COMPONENTS,
            body=body,
        )
    except Exception as exc:  # noqa: BLE001 -- report any refusal as "not valid"
        print(f"verify failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"verified {len(results)} signature(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
