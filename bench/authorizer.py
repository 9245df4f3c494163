"""1. Warm authorizer decision vs a bare ``jwt.decode`` vs one RSA verify.

Every method sees the same few hundred distinct, valid, freshly signed tokens,
so nothing a new token would miss can be cached: keys are cached (as in a warm
Lambda), results are not. Rounds interleave the methods so drift on the
shared machine hits them alike (the order reverses every other round); ratios are the
median of per-round ratios.

* jwt.decode (the goal's baseline): PyJWT's decode alone, the key already
  prepared, with the claim options the verifier passes (RS256, issuer,
  required exp/iss, no audience check);
* floor: ``cryptography`` RSA-2048 PKCS#1 v1.5 SHA-256 verify of each token's
  signing input, with the signature already split off and decoded;
* project: ``app.ws_authorizer(event, None)``: token extraction, every
  verifier check, context, policy and the decision's log line - the whole Lambda answer;
* project verify: ``CognitoJwtVerifier.verify`` alone;
* naive: ``PyJWKClient`` (JWKS cached by PyJWT) + ``jwt.decode`` per call,
  plus the token_use/client check PyJWT cannot do, as most examples do it.
"""
from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from bench.common import Goal, Result, check, table

TOKENS = 300
ROUNDS = 21


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def run(tokens: int = TOKENS, rounds: int = ROUNDS) -> Result:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.hashes import SHA256

    from devtools.gateway.events import Api, ClientInfo, authorizer_event
    from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory

    key = KeyPair.generate("k1")
    server = JwksServer([key])
    saved = {name: os.environ.get(name) for name in _ENV}
    try:
        os.environ.update(COGNITO_USER_POOL_ID=POOL_ID, COGNITO_APP_CLIENT_IDS=CLIENT_ID,
                          COGNITO_JWKS_URL=server.url, CONNECTIONS_TABLE="bench-connections",
                          ALLOWED_ORIGINS="http://localhost:8000", TOKEN_SOURCES="header,query,protocol,cookie")
        import app
        from chalicelib import runtime

        runtime.rebuild()
        factory = TokenFactory(ISSUER, CLIENT_ID, key)
        values = [factory.access_token(sub=f"user-{i}", username=f"user{i}", groups=["members"])
                  if i % 2 else factory.id_token(sub=f"user-{i}", username=f"user{i}", email=f"u{i}@example.com")
                  for i in range(tokens)]
        check(len(set(values)) == tokens, "tokens are not distinct")
        api = Api(stage="dev")
        events = [authorizer_event(api, ClientInfo(headers={"Authorization": f"Bearer {t}"})) for t in values]

        public = key.private_key.public_key()
        split = [(t[:t.rindex(".")].encode("ascii"), _b64decode(t[t.rindex(".") + 1:])) for t in values]
        padding, sha256 = PKCS1v15(), SHA256()

        def floor() -> None:
            for signing_input, signature in split:
                public.verify(signature, signing_input, padding, sha256)

        handler = app.ws_authorizer
        decisions: list[Any] = []

        # Each decision writes its JSON log line to stdout (CloudWatch on Lambda):
        # that write is counted, the consumer of this benchmark's output is not.
        log_sink = open(os.devnull, "w")

        def project() -> None:
            with contextlib.redirect_stdout(log_sink):
                for event in events:
                    decisions.append(handler(event, None))

        verifier = runtime.current().verifier

        def project_verify() -> None:
            for value in values:
                verifier.verify(value)

        jwks_client = jwt.PyJWKClient(server.url)

        def naive() -> None:
            for value in values:
                signing_key = jwks_client.get_signing_key_from_jwt(value)
                claims = jwt.decode(value, signing_key.key, algorithms=["RS256"], issuer=ISSUER,
                                    options={"verify_aud": False, "require": ["exp", "iat", "sub"]})
                if claims["token_use"] == "access":
                    assert claims["client_id"] == CLIENT_ID
                else:
                    assert claims["aud"] == CLIENT_ID

        def decode_only() -> None:
            for value in values:
                jwt.decode(value, public, algorithms=["RS256"], issuer=ISSUER, leeway=0,
                           options={"require": ["exp", "iss"], "verify_aud": False})

        methods: dict[str, Callable[[], None]] = {
            "jwt.decode, key prepared": decode_only,
            "floor: RSA verify": floor,
            "project: ws_authorizer": project,
            "project: verifier.verify": project_verify,
            "naive: PyJWKClient+decode": naive,
        }
        # Warm up: keys fetched and prepared, code paths hot.
        for fn in methods.values():
            fn()
        check(all(d["policyDocument"]["Statement"][0]["Effect"] == "Allow" for d in decisions),
              "the authorizer did not allow every valid token")
        check(len({d["principalId"] for d in decisions[:tokens]}) == tokens, "decisions lost their principals")
        check(verifier.jwks(ISSUER).fetch_count == 1, "the JWKS was fetched more than once")
        times: dict[str, list[float]] = {name: [] for name in methods}
        order = list(methods.items())
        for round_index in range(rounds):
            # Alternate the order, so no method always runs right after the same neighbour.
            for name, fn in (order if round_index % 2 == 0 else order[::-1]):
                decisions.clear()
                started = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - started) / tokens * 1e6)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        from chalicelib import runtime as _runtime

        _runtime.rebuild()

    import statistics

    def ratio(name: str, baseline: str) -> float:
        return statistics.median(t / f for t, f in zip(times[name], times[baseline]))

    decode, floor_name = "jwt.decode, key prepared", "floor: RSA verify"
    rows = [(name, statistics.median(ts), min(ts), ratio(name, decode), ratio(name, floor_name))
            for name, ts in times.items()]
    result = Result("1. warm authorizer decision")
    result.tables.append(f"  {tokens} distinct valid tokens (half access, half id), {rounds} interleaved rounds")
    result.tables.append(table(["method", "median us/token", "best us/token", "x jwt.decode", "x RSA verify"],
                               rows))
    project = "project: ws_authorizer"
    project_ratio = ratio(project, decode)
    result.goals.append(Goal("ws_authorizer / jwt.decode", project_ratio, 2.5))
    per_round = sorted(t / f for t, f in zip(times[project], times[decode]))
    quartiles = statistics.quantiles(per_round, n=4)
    result.notes.append(
        f"ws_authorizer / jwt.decode per round: min {per_round[0]:.2f}, p25 {quartiles[0]:.2f}, "
        f"median {quartiles[1]:.2f}, p75 {quartiles[2]:.2f}, max {per_round[-1]:.2f}; "
        f"best round / best round {min(times[project]) / min(times[decode]):.2f}")
    result.notes.append(f"ws_authorizer / RSA verify: {ratio(project, floor_name):.2f}x; "
                        f"jwt.decode / RSA verify: {ratio(decode, floor_name):.2f}x")
    result.notes.append(f"naive / project: {ratio('naive: PyJWKClient+decode', project):.2f}x")
    return result


_ENV = ("COGNITO_USER_POOL_ID", "COGNITO_APP_CLIENT_IDS", "COGNITO_JWKS_URL", "CONNECTIONS_TABLE",
        "ALLOWED_ORIGINS", "TOKEN_SOURCES")


if __name__ == "__main__":
    print(run().render())
