"""An identity provider written with jwcrypto (independent of datagate): makes a key and
signs citizen assertions, for tests/crypto/citizen_interop.rs.

  citizen_assertion.py key ES256|RS256            -> prints {"private": JWK, "public": JWK}
  citizen_assertion.py sign PRIVATE_JWK_FILE ALG   (claims JSON on stdin) -> compact JWS
"""
import json
import sys

from jwcrypto import jwk, jws


def main():
    mode = sys.argv[1]
    if mode == "key":
        alg = sys.argv[2]
        if alg == "ES256":
            key = jwk.JWK.generate(kty="EC", crv="P-256")
        else:
            key = jwk.JWK.generate(kty="RSA", size=2048)
        kid = key.thumbprint()
        private = json.loads(key.export_private())
        public = json.loads(key.export_public())
        private["kid"] = kid
        public["kid"] = kid
        print(json.dumps({"private": private, "public": public}))
    elif mode == "sign":
        with open(sys.argv[2], encoding="utf-8") as f:
            private = json.load(f)
        alg = sys.argv[3]
        key = jwk.JWK(**private)
        token = jws.JWS(sys.stdin.buffer.read())
        token.add_signature(key, alg=alg, protected=json.dumps({"alg": alg, "kid": private["kid"]}))
        sys.stdout.write(token.serialize(compact=True))
    else:
        sys.exit("unknown mode")


main()
