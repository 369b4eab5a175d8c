#!/usr/bin/env python3
"""The independent JWE implementation for datagate's interop test (jwcrypto).

    jwe_interop.py encrypt JWKFILE   plaintext on stdin  -> compact JWE on stdout
    jwe_interop.py decrypt JWKFILE   compact JWE on stdin -> plaintext on stdout

encrypt takes a public JWK and uses ECDH-ES+A256KW for kty EC, RSA-OAEP-256
for kty RSA, always A256GCM; the JWK's kid, if any, goes into the header.
decrypt takes a private JWK and accepts only those algorithms.
Exit status 3 when jwcrypto is not installed (the test then skips).
"""
import json
import sys

try:
    from jwcrypto import jwe, jwk
except ImportError:
    sys.stderr.write("jwcrypto is not installed (pip install jwcrypto)\n")
    sys.exit(3)

ALGS = {"EC": "ECDH-ES+A256KW", "RSA": "RSA-OAEP-256"}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("encrypt", "decrypt"):
        sys.stderr.write(__doc__)
        return 2
    mode, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        members = json.load(f)
    key = jwk.JWK(**members)
    if mode == "encrypt":
        header = {"alg": ALGS[members["kty"]], "enc": "A256GCM"}
        if "kid" in members:
            header["kid"] = members["kid"]
        token = jwe.JWE(sys.stdin.buffer.read(), protected=json.dumps(header))
        token.add_recipient(key)
        sys.stdout.write(token.serialize(compact=True))
    else:
        token = jwe.JWE()
        token.allowed_algs = list(ALGS.values()) + ["A256GCM"]
        token.deserialize(sys.stdin.read().strip(), key=key)
        sys.stdout.buffer.write(token.payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
