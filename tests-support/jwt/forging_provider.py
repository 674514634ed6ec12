"""A stub OpenID provider whose token endpoint answers with id_tokens forged by PyJWT.

POST /scenario with the scenario's name picks what the next id_token is: `valid`, or an attack:
`alg-none`, `hs256-public-key` (HMAC keyed with the RSA public key), `unknown-kid`, `expired`,
`wrong-aud`, `wrong-iss`, `tampered` (payload changed after signing), `wrong-nonce`.
It also plays a SMART EHR (`/.well-known/smart-configuration`): a launch's token response then
carries a patient and an Appointment in `fhirContext`, and its id_token a `fhirUser`.
Tests only; never a real provider.
"""

import base64
import json
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import HMACAlgorithm, RSAAlgorithm

PORT = int(os.environ["PORT"])
ISSUER = f"http://127.0.0.1:{PORT}"
CLIENT_ID = "telechart"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
STATE = {"scenario": "valid", "nonce": None}


class KeyConfusionHMAC(HMACAlgorithm):
    """PyJWT's HS256, minus its guard against asymmetric keys: exactly the forgery to refuse."""

    def prepare_key(self, key):
        return key


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(scenario, nonce):
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "alice", "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": nonce,
              "amr": ["pwd", "otp"], "fhirUser": f"{ISSUER}/Practitioner/dr-forged"}
    headers = {"kid": "k1"}
    if scenario == "expired":
        claims.update(iat=now - 7200, exp=now - 3600)
    elif scenario == "wrong-aud":
        claims["aud"] = "someone-else"
    elif scenario == "wrong-iss":
        claims["iss"] = "http://127.0.0.1:1"
    elif scenario == "wrong-nonce":
        claims["nonce"] = "not-the-nonce"
    if scenario == "alg-none":
        return jwt.encode(claims, None, algorithm="none", headers=headers)
    if scenario == "hs256-public-key":
        signer = jwt.PyJWS()
        signer.unregister_algorithm("HS256")
        signer.register_algorithm("HS256", KeyConfusionHMAC(HMACAlgorithm.SHA256))
        return signer.encode(json.dumps(claims).encode(), PUBLIC_PEM, algorithm="HS256", headers=headers)
    if scenario == "unknown-kid":
        headers["kid"] = "k-unknown"
    token = jwt.encode(claims, KEY, algorithm="RS256", headers=headers)
    if scenario == "tampered":
        head, _, sig = token.split(".")
        claims["sub"] = "bob-mfa"
        token = ".".join([head, b64(json.dumps(claims).encode()), sig])
    return token


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_json(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/.well-known/openid-configuration":
            return self.send_json({
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize", "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/jwks", "response_types_supported": ["code"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            })
        if url.path == "/.well-known/smart-configuration":
            return self.send_json({
                "issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks", "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token", "code_challenge_methods_supported": ["S256"],
                "capabilities": ["launch-ehr", "client-public", "sso-openid-connect"],
            })
        if url.path == "/jwks":
            jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
            jwk.update(kid="k1", alg="RS256", use="sig")
            return self.send_json({"keys": [jwk]})
        if url.path == "/authorize":
            STATE["nonce"] = query.get("nonce")
            STATE["launch"] = "launch" in query
            target = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": "code-1", "state": query["state"]})
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
            return None
        return self.send_json({"error": "not found"}, 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length).decode()
        if self.path == "/scenario":
            STATE["scenario"] = body.strip()
            return self.send_json({"scenario": STATE["scenario"]})
        if self.path == "/token":
            token = forge(STATE["scenario"], STATE["nonce"])
            reply = {"access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "id_token": token}
            if STATE.get("launch"):
                reply.update(patient="forged-patient", encounter="forged-encounter",
                             fhirContext=[{"reference": "Appointment/forged-appt"}])
            return self.send_json(reply)
        return self.send_json({"error": "not found"}, 404)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"forging provider at {ISSUER}", flush=True)
    server.serve_forever()
