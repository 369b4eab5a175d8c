#!/usr/bin/env python3
"""An independent JWS implementation (jwcrypto) for the global configuration's
interoperability tests (tests/integration/global_interop.rs).

Modes:
  sign KEYPEM     payload on stdin  -> JWS compact serialisation on stdout
                  (ES256 for an EC P-256 key, RS256 for an RSA key)
  verify PUBPEM   JWS compact on stdin -> payload on stdout; exit 1 if it does not
                  verify (only ES256 and RS256 are allowed)
"""

import json
import sys

from jwcrypto import jwk, jws

ALGORITHMS = {"EC": "ES256", "RSA": "RS256"}


def sign(pem: bytes, payload: bytes) -> int:
    key = jwk.JWK.from_pem(pem)
    alg = ALGORITHMS[key["kty"]]
    token = jws.JWS(payload)
    token.add_signature(key, alg=None, protected=json.dumps({"alg": alg}))
    sys.stdout.write(token.serialize(compact=True))
    return 0


def verify(pem: bytes, compact: bytes) -> int:
    key = jwk.JWK.from_pem(pem)
    token = jws.JWS()
    try:
        token.deserialize(compact.decode("ascii").strip())
        token.allowed_algs = list(ALGORITHMS.values())
        token.verify(key)
    except Exception as error:  # any failure is a refusal
        print(f"verification failed: {type(error).__name__}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(token.payload)
    return 0


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("sign", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[2], "rb") as f:
        pem = f.read()
    data = sys.stdin.buffer.read()
    return sign(pem, data) if sys.argv[1] == "sign" else verify(pem, data)


if __name__ == "__main__":
    sys.exit(main())
