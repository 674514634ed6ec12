"""Prints a SMART Backend Services client assertion forged by PyJWT (tests only).

usage: forge_assertion.py SCENARIO CLIENT_ID TOKEN_URL KID PRIVATE_KEY_PEM_FILE
SCENARIO: valid | alg-none | hs256-public-key | exp-too-far | expired | wrong-aud | wrong-iss
The key is the client's real P-384 key: every forgery but the algorithm ones is signed correctly,
so only the claim under test is wrong.
"""

import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import HMACAlgorithm


class KeyConfusionHMAC(HMACAlgorithm):
    """PyJWT's HS256 without its guard against asymmetric keys."""

    def prepare_key(self, key):
        return key


def main():
    scenario, client_id, token_url, kid, key_file = sys.argv[1:6]
    pem = open(key_file, "rb").read()
    key = serialization.load_pem_private_key(pem, password=None)
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now, "exp": now + 240, "jti": str(uuid.uuid4())}
    headers = {"kid": kid, "typ": "JWT"}
    if scenario == "exp-too-far":
        claims["exp"] = now + 900
    elif scenario == "expired":
        claims.update(iat=now - 600, exp=now - 300)
    elif scenario == "wrong-aud":
        claims["aud"] = "https://elsewhere.example/token"
    elif scenario == "wrong-iss":
        claims["iss"] = "someone-else"
    if scenario == "alg-none":
        print(jwt.encode(claims, None, algorithm="none", headers=headers))
    elif scenario == "hs256-public-key":
        public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        signer = jwt.PyJWS()
        signer.unregister_algorithm("HS256")
        signer.register_algorithm("HS256", KeyConfusionHMAC(HMACAlgorithm.SHA256))
        print(signer.encode(json.dumps(claims).encode(), public, algorithm="HS256", headers=headers))
    else:
        print(jwt.encode(claims, key, algorithm="ES384", headers=headers))


if __name__ == "__main__":
    main()
