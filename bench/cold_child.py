"""One cold start, run as a fresh process by ``bench.cold_start``; prints ``RESULT {json}``.

``python bench/cold_child.py project|floor EVENT_FILE``. Run as a script path
(not ``-m``) so nothing but this file is imported before the clock starts.
Both modes read their input (event, token, JWKS URL) before the clock starts.

* project: ``import app`` and one ``ws_authorizer`` decision (the JWKS
  fetched from the URL in COGNITO_JWKS_URL); asserts boto3 never loaded.
* floor: ``import jwt`` (and cryptography), fetch the JWKS with ``urllib``,
  ``jwt.decode`` once.
"""
import json
import sys
import time

mode, path = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as handle:
    given = json.load(handle)

started = time.perf_counter()
sys.stderr.write("-- clock started --\n")  # -X importtime lines after this are on the clock
if mode == "project":
    import app

    imported = time.perf_counter()
    answer = app.ws_authorizer(given["event"], None)
    ok = answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
elif mode == "floor":
    import urllib.request

    import jwt

    imported = time.perf_counter()
    token = given["token"]
    kid = jwt.get_unverified_header(token)["kid"]
    with urllib.request.urlopen(given["jwks_url"], timeout=2) as response:
        keys = json.loads(response.read())["keys"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == kid)).key
    claims = jwt.decode(token, key, algorithms=["RS256"], issuer=given["issuer"], options={"verify_aud": False})
    ok = claims["client_id"] == given["client_id"]
else:
    raise SystemExit(f"unknown mode {mode!r}")
finished = time.perf_counter()
print("RESULT " + json.dumps({
    "ok": ok,
    "import_ms": (imported - started) * 1000,
    "decision_ms": (finished - imported) * 1000,
    "total_ms": (finished - started) * 1000,
    "aws": sorted(name for name in ("boto3", "botocore") if name in sys.modules),
    "requests": "requests" in sys.modules,
    "modules": len(sys.modules),
}), flush=True)
