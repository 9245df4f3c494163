"""The REST API through ``chalice.test.Client``: ``client.http`` runs the app's
``rest_authorizer`` before each route exactly as ``chalice local`` does, with
real tokens (tests/support/jwt_factory.py, a JWKS over HTTP), DynamoDB Local
and an HTTP management API. WebSocket connections are made the way API
Gateway makes them (ws_authorizer, then $connect), so the pushes have real
audiences in the table."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from chalice.app import Request
from chalice.test import HTTPResponse

from chalicelib import rest, runtime
from chalicelib.errors import AppError
from chalicelib.verifier import CognitoJwtVerifier
from devtools.gateway.events import ClientInfo
from tests.support.builders import ROOT
from tests.support.chalice_client import AppHarness, app_harness, chalice_client, services_env
from tests.support.jwt_factory import JwksServer, KeyPair, TokenFactory
from tests.support.management_api import ManagementApiServer

PUSH_SCOPE = "ws-cognito/push"
REST_ARN = "arn:aws:execute-api:us-east-1:123456789012:restapi01/api/{}"
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"Message": "User is not authorized to access this resource"}


class Harness(AppHarness):
    """The shared harness, with the REST side."""

    # -- the WebSocket side ------------------------------------------------------------

    def connect(self, sub: str, username: str, source: str = "header") -> ClientInfo:
        """Authorize then $connect one WebSocket client, as API Gateway would."""
        token = self.tokens.access_token(sub=sub, username=username)
        return self.open(ClientInfo(headers={"Authorization": f"Bearer {token}"}) if source == "header"
                         else ClientInfo(query={"access_token": token}))

    def subscribe(self, info: ClientInfo, topic: str) -> None:
        self.send(info, {"action": "subscribe", "topic": topic})
        frame = self.raw_frames(info)[-1]
        assert (frame["type"], frame["topic"]) == ("subscribed", topic), frame
        self.management.reset_stats()

    # -- the REST side -------------------------------------------------------------------

    def publisher(self, sub: str = "pub-1", username: str = "pat") -> str:
        return self.tokens.access_token(sub=sub, username=username, groups=("publishers",))

    def get(self, path: str, token: str | None = None, **headers: str) -> HTTPResponse:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.http.get(path, headers=headers)

    def post(self, path: str, body: Any, token: str | None = None, raw: bytes | None = None) -> HTTPResponse:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body).encode()
        return self.client.http.post(path, headers=headers, body=data)


def _json(response: HTTPResponse) -> Any:
    return json.loads(response.body)


@pytest.fixture
def stage_env(jwks_server: JwksServer, connections_table: str, dynamodb_local: Any,
              management_api: ManagementApiServer, cognito_issuer: str, client_id: str) -> dict[str, str]:
    return services_env(
        jwks_server, connections_table, dynamodb_local, management_api, cognito_issuer, client_id,
        PUSH_GROUPS="publishers",
        PUSH_SCOPES=PUSH_SCOPE,
    )


@pytest.fixture
def harness(tmp_path: Path, stage_env: dict[str, str], token_factory: TokenFactory,
            management_api: ManagementApiServer, stores: Any) -> Iterator[Harness]:
    with app_harness(Harness, tmp_path, stage_env, token_factory, management_api, stores) as harness:
        yield harness


def _machine_token(tokens: TokenFactory, scope: str) -> str:
    """A client-credentials access token, as Cognito issues one: the client is the subject,
    ``client_id`` and ``scope`` are there, no ``username`` and no groups."""
    claims = tokens.access_claims(sub=tokens.client_id, scope=scope)
    del claims["username"]
    claims["version"] = 2
    return tokens.sign(claims)


# -- GET /me ----------------------------------------------------------------------------


def test_me_shows_the_identity_and_only_the_callers_connections(harness: Harness) -> None:
    phone, laptop = harness.connect("u-1", "ann"), harness.connect("u-1", "ann", source="query")
    harness.connect("u-2", "ben")
    token = harness.tokens.access_token(sub="u-1", username="ann", groups=("staff", "admins"),
                                        scope="openid profile")
    response = harness.get("/me", token)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = _json(response)
    connections = sorted(body.pop("connections"), key=lambda c: c["connectionId"])
    assert body == {"sub": "u-1", "username": "ann", "token_use": "access", "groups": ["staff", "admins"],
                    "scopes": ["openid", "profile"]}
    expected = sorted([(phone.connection_id, "header"), (laptop.connection_id, "query")])
    assert [(c["connectionId"], c["tokenSource"]) for c in connections] == expected
    assert all(isinstance(c["connectedAt"], int) and c["connectedAt"] > 1_600_000_000_000 for c in connections)


def test_me_with_an_id_token_and_no_connections(harness: Harness) -> None:
    body = _json(harness.get("/me", harness.tokens.id_token(sub="u-9", username="zed")))
    assert (body["sub"], body["username"], body["token_use"], body["connections"]) == ("u-9", "zed", "id", [])


def test_missing_token_is_401_everywhere(harness: Harness) -> None:
    info = harness.connect("u-1", "ann")
    for response in (harness.get("/me"), harness.post("/messages", {"data": 1}),
                     harness.post("/users/u-1/messages", {"data": 1}), harness.post("/topics/t/messages", {"data": 1})):
        assert (response.status_code, _json(response)) == (401, UNAUTHORIZED)
    assert harness.raw_frames(info) == []


@pytest.mark.parametrize("header", [
    "Bearer not-a-jwt",
    "Bearer ",
    "Basic YWxpY2U6c2VjcmV0",
    "bearer a.b.c",
])
def test_bad_authorization_header_is_401(harness: Harness, header: str) -> None:
    response = harness.client.http.get("/me", headers={"Authorization": header})
    assert (response.status_code, _json(response)) == (401, UNAUTHORIZED)


def test_bad_tokens_are_401_and_send_nothing(harness: Harness, client_id: str) -> None:
    info = harness.connect("u-1", "ann")
    tokens = harness.tokens
    publisher = harness.publisher()
    bad = {
        "expired": tokens.access_token(groups=("publishers",), exp_in=-10),
        "tampered": publisher[:-6] + ("AAAAAA" if not publisher.endswith("AAAAAA") else "BBBBBB"),
        "rogue key": tokens.sign(tokens.access_claims(groups=("publishers",)), key=KeyPair.generate("k2").with_kid("k1")),
        "other client": tokens.access_token(groups=("publishers",), client_id="someone-else"),
        "other issuer": tokens.access_token(groups=("publishers",), iss="https://evil.example/pool"),
        "refresh-like token_use": tokens.access_token(groups=("publishers",), token_use="refresh"),
        "HS256 with the public key": tokens.sign(tokens.access_claims(groups=("publishers",)), alg="HS256"),
    }
    for name, token in bad.items():
        for response in (harness.get("/me", token), harness.post("/messages", {"data": name}, token)):
            assert (response.status_code, _json(response)) == (401, UNAUTHORIZED), name
    assert harness.raw_frames(info) == []


def test_jwks_down_is_401(harness: Harness, jwks_server: JwksServer) -> None:
    jwks_server.fail(503)
    response = harness.get("/me", harness.tokens.access_token())
    assert (response.status_code, _json(response)) == (401, UNAUTHORIZED)


def test_required_group_missing_is_403_on_every_route(tmp_path: Path, stage_env: dict[str, str],
                                                      token_factory: TokenFactory,
                                                      management_api: ManagementApiServer) -> None:
    with chalice_client(tmp_path, {**stage_env, "REQUIRED_GROUPS": "staff"}) as client:
        outsider = token_factory.access_token(groups=("publishers",))
        member = token_factory.access_token(groups=("staff",))
        headers = {"Authorization": f"Bearer {outsider}", "Content-Type": "application/json"}
        for response in (client.http.get("/me", headers=headers),
                         client.http.post("/messages", headers=headers, body=b'{"data":1}')):
            assert (response.status_code, json.loads(response.body)) == (403, FORBIDDEN)
        ok = client.http.get("/me", headers={"Authorization": f"Bearer {member}"})
        assert ok.status_code == 200
    assert management_api.total_posts == 0


def test_settings_that_do_not_load_answer_500_and_let_nobody_in(tmp_path: Path, stage_env: dict[str, str],
                                                                token_factory: TokenFactory,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    token = token_factory.access_token()
    with chalice_client(tmp_path, {**stage_env, "COGNITO_USER_POOL_ID": "not-a-pool"}) as client:
        response = client.http.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    assert json.loads(response.body) == {"message": None}
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"authorizer_error"' in line]
    assert [(e["error"], e["message"].split(":")[0]) for e in logged] == [("SettingsError", "COGNITO_USER_POOL_ID")]
    assert token not in json.dumps(logged)


def test_dynamodb_down_is_a_json_503(tmp_path: Path, stage_env: dict[str, str], token_factory: TokenFactory,
                                    management_api: ManagementApiServer) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with chalice_client(tmp_path, {**stage_env, "AWS_ENDPOINT_URL_DYNAMODB": closed}) as client:
        publisher = token_factory.access_token(groups=("publishers",))
        headers = {"Authorization": f"Bearer {publisher}", "Content-Type": "application/json"}
        for response in (client.http.get("/me", headers=headers),
                         client.http.post("/users/u-1/messages", headers=headers, body=b'{"data": 1}')):
            assert response.status_code == 503
            assert json.loads(response.body) == {"ok": False, "error": {
                "code": "unavailable", "message": "a service this needs is unavailable; try again later"}}
    assert management_api.total_posts == 0


# -- the authorizer's answer -----------------------------------------------------------------


def _authorize(harness: Harness, token: str, route: str = "GET/me") -> dict[str, Any]:
    event = {"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": REST_ARN.format(route)}
    payload: dict[str, Any] = harness.client.lambda_.invoke("rest_authorizer", event).payload
    return payload


def test_policy_names_the_routes_of_the_token_whatever_route_is_called(harness: Harness) -> None:
    """API Gateway may cache the policy per token and apply it to the next route: it must not depend
    on the route called, only on what the token may do."""
    user = harness.tokens.access_token(sub="u-1", username="ann")
    publisher = harness.publisher()
    for route in ("GET/me", "POST/messages", "POST/users/u-2/messages"):
        read_only = _authorize(harness, user, route)
        assert read_only["principalId"] == "u-1"
        assert read_only["policyDocument"]["Statement"] == [
            {"Action": "execute-api:Invoke", "Effect": "Allow",
             "Resource": [REST_ARN.format("GET/me"), REST_ARN.format("GET/topics/*/members")]}]
        full = _authorize(harness, publisher, route)
        assert full["policyDocument"]["Statement"][0]["Resource"] == [
            REST_ARN.format(r) for r in ("GET/me", "GET/topics/*/members", "POST/users/*/messages",
                                         "POST/topics/*/messages", "POST/messages")]
    context = _authorize(harness, publisher)["context"]
    assert {k: context[k] for k in ("sub", "username", "token_use", "groups", "tokenSource")} == {
        "sub": "pub-1", "username": "pat", "token_use": "access", "groups": "publishers", "tokenSource": "header"}
    assert all(isinstance(v, (str, int, float, bool)) for v in context.values())


def test_authorizer_raises_exactly_unauthorized_and_denies_without_required_scope(
        tmp_path: Path, stage_env: dict[str, str], token_factory: TokenFactory) -> None:
    with chalice_client(tmp_path, {**stage_env, "REQUIRED_SCOPES": "openid"}) as client:
        with pytest.raises(Exception) as caught:
            client.lambda_.invoke("rest_authorizer", {"type": "TOKEN", "authorizationToken": "Bearer nope",
                                                      "methodArn": REST_ARN.format("GET/me")})
        assert str(caught.value) == "Unauthorized"
        denied = client.lambda_.invoke("rest_authorizer", {
            "type": "TOKEN", "authorizationToken": f"Bearer {token_factory.access_token(scope='email')}",
            "methodArn": REST_ARN.format("GET/me")}).payload
    assert denied["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": REST_ARN.format("*")}]
    assert "context" not in denied


# -- pushes ---------------------------------------------------------------------------------


def test_push_to_a_user_reaches_all_their_connections_and_no_one_else(harness: Harness) -> None:
    phone, laptop, other = harness.connect("u-1", "ann"), harness.connect("u-1", "ann"), harness.connect("u-2", "ben")
    response = harness.post("/users/u-1/messages", {"data": {"n": 1}}, harness.publisher())
    assert response.status_code == 200
    assert _json(response) == {"ok": True, "connections": 2, "delivered": 2, "gone": 0, "failed": 0}
    for info in (phone, laptop):
        (frame,) = harness.raw_frames(info)
        assert (frame["type"], frame["data"]) == ("notification", {"n": 1})
        assert isinstance(frame["timestamp"], int)
    assert harness.raw_frames(other) == []


def test_push_to_a_user_by_username(harness: Harness) -> None:
    ann, ben = harness.connect("u-1", "ann"), harness.connect("u-2", "ben")
    response = harness.post("/users/ben/messages?by=username", {"data": "hi"}, harness.publisher())
    assert _json(response) == {"ok": True, "connections": 1, "delivered": 1, "gone": 0, "failed": 0}
    assert [f["data"] for f in harness.raw_frames(ben)] == ["hi"]
    assert harness.raw_frames(ann) == []
    # Without ?by=username the path is a sub: no user has the sub "ben".
    assert _json(harness.post("/users/ben/messages", {"data": "x"}, harness.publisher()))["connections"] == 0


def test_push_to_a_topic_reaches_its_subscribers_only(harness: Harness) -> None:
    sub1, sub2, outsider = harness.connect("a", "a"), harness.connect("b", "b"), harness.connect("c", "c")
    harness.subscribe(sub1, "public/scores")
    harness.subscribe(sub2, "public/scores")
    response = harness.post("/topics/public%2Fscores/messages", {"data": 42}, harness.publisher())
    assert _json(response) == {"ok": True, "connections": 2, "delivered": 2, "gone": 0, "failed": 0}
    for info in (sub1, sub2):
        (frame,) = harness.raw_frames(info)
        assert (frame["type"], frame["topic"], frame["data"]) == ("push", "public/scores", 42)
    assert harness.raw_frames(outsider) == []


def test_push_to_everyone(harness: Harness) -> None:
    clients = [harness.connect(f"u-{i}", f"user{i}") for i in range(3)]
    response = harness.post("/messages", {"data": [1, 2]}, harness.publisher())
    assert _json(response) == {"ok": True, "connections": 3, "delivered": 3, "gone": 0, "failed": 0}
    for info in clients:
        assert [(f["type"], f["data"]) for f in harness.raw_frames(info)] == [("broadcast", [1, 2])]


def test_gone_connections_are_reported_and_forgotten(harness: Harness) -> None:
    alive, ghost = harness.connect("u-1", "ann"), harness.connect("u-1", "ann")
    harness.management.remove(ghost.connection_id)
    report = _json(harness.post("/users/u-1/messages", {"data": 1}, harness.publisher()))
    assert report == {"ok": True, "connections": 2, "delivered": 1, "gone": 1, "failed": 0}
    assert harness.stores.connections.get(ghost.connection_id) is None
    assert harness.stores.connections.get(alive.connection_id) is not None


@pytest.mark.parametrize("path", ["/messages", "/users/u-1/messages", "/topics/public%2Fnews/messages"])
def test_push_without_permission_is_403_and_sends_nothing(harness: Harness, path: str) -> None:
    info = harness.connect("u-1", "ann")
    harness.subscribe(info, "public/news")
    for token in (harness.tokens.access_token(sub="u-1", username="ann"),  # an ordinary user
                  harness.tokens.access_token(groups=("staff",), scope="openid email"),  # wrong group and scopes
                  _machine_token(harness.tokens, "ws-cognito/read")):  # a machine without the push scope
        response = harness.post(path, {"data": "nope"}, token)
        assert (response.status_code, _json(response)) == (403, FORBIDDEN)
    assert harness.management.total_posts == 0


def test_client_credentials_token_with_a_push_scope_can_push(harness: Harness, client_id: str) -> None:
    info = harness.connect("u-1", "ann")
    machine = _machine_token(harness.tokens, f"{PUSH_SCOPE} ws-cognito/read")
    response = harness.post("/users/u-1/messages", {"data": "from a back-end"}, machine)
    assert _json(response) == {"ok": True, "connections": 1, "delivered": 1, "gone": 0, "failed": 0}
    assert [f["data"] for f in harness.raw_frames(info)] == ["from a back-end"]
    me = _json(harness.get("/me", machine))
    assert me == {"sub": client_id, "username": "", "token_use": "access", "groups": [],
                  "scopes": [PUSH_SCOPE, "ws-cognito/read"], "connections": []}


def test_the_verifier_accepts_a_client_credentials_token(verifier: CognitoJwtVerifier, token_factory: TokenFactory,
                                                        client_id: str) -> None:
    claims = verifier.verify(_machine_token(token_factory, PUSH_SCOPE))
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (client_id, client_id, PUSH_SCOPE)
    assert "username" not in claims and "cognito:groups" not in claims


def test_nobody_may_push_when_push_groups_and_scopes_are_unset(tmp_path: Path, stage_env: dict[str, str],
                                                               token_factory: TokenFactory,
                                                               management_api: ManagementApiServer) -> None:
    env = {k: v for k, v in stage_env.items() if k not in ("PUSH_GROUPS", "PUSH_SCOPES")}
    with chalice_client(tmp_path, env) as client:
        for token in (token_factory.access_token(groups=("publishers", "admin")),
                      _machine_token(token_factory, PUSH_SCOPE)):
            response = client.http.post("/messages", headers={"Authorization": f"Bearer {token}"},
                                        body=b'{"data":1}')
            assert response.status_code == 403
    assert management_api.total_posts == 0


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("path, raw, code", [
    ("/messages", b'{"nodata": 1}', "missing_field"),
    ("/users/u-1/messages", b"{}", "missing_field"),
    ("/topics/news/messages", b'{"topic": "news"}', "bad_request"),  # the path names the topic: once
    ("/messages", b"{not json", "invalid_json"),
    ("/messages", b"", "invalid_json"),
    ("/messages", b'{"data": NaN}', "invalid_json"),
    ("/messages", b'{"data": 1, "data": 2}', "invalid_json"),
    ("/messages", b'{"data": ' + b"[" * 100 + b"]" * 100 + b"}", "invalid_json"),
    ("/messages", b'{"data": "\\ud800"}', "invalid_json"),
    ("/messages", b'\xff\xfe{"data": 1}', "invalid_json"),
    ("/messages", b'["data", 1]', "bad_request"),
    ("/messages", b'"data"', "bad_request"),
    ("/messages", json.dumps({"data": "x" * (128 * 1024)}).encode(), "payload_too_large"),
    ("/users/u-1/messages", json.dumps({"data": "é" * (64 * 1024)}).encode(), "payload_too_large"),
    ("/messages", b" " * (rest.MAX_BODY_BYTES + 1), "payload_too_large"),
    ("/topics/" + "t" * 300 + "/messages", b'{"data": 1}', "bad_topic"),
    ("/users/u-1/messages?by=email", b'{"data": 1}', "bad_request"),
    ("/users/u-1/messages", b'{"userId": "u-2", "data": 1}', "bad_request"),
])
def test_bad_input_is_400_with_a_json_error_and_sends_nothing(harness: Harness, path: str, raw: bytes,
                                                              code: str) -> None:
    info = harness.connect("u-1", "ann")
    harness.subscribe(info, "public/news")
    response = harness.post(path, None, harness.publisher(), raw=raw)
    assert response.status_code == 400, response.body
    body = _json(response)
    assert body["ok"] is False and body["error"]["code"] == code and body["error"]["message"]
    assert harness.management.total_posts == 0


# -- the routes fail closed -------------------------------------------------------------------


def _request(authorizer: dict[str, Any] | None, body: str | None = None) -> Request:
    """A REST event as API Gateway hands it to the handler; ``authorizer`` None: no authorizer ran."""
    context: dict[str, Any] = {"httpMethod": "POST" if body else "GET", "resourcePath": "/me",
                               "identity": {"sourceIp": "10.0.0.1"}}
    if authorizer is not None:
        context["authorizer"] = authorizer
    return Request({"multiValueQueryStringParameters": None, "headers": {"content-type": "application/json"},
                    "pathParameters": None, "requestContext": context, "body": body, "stageVariables": None})


@pytest.mark.parametrize("authorizer", [None, {}, {"principalId": ""}])
def test_a_route_no_authorizer_vouched_for_is_401(authorizer: dict[str, Any] | None) -> None:
    with pytest.raises(AppError) as caught:
        rest.caller(_request(authorizer))
    assert (caught.value.code.http_status, caught.value.code) == (401, "unauthorized")


def test_the_push_routes_check_the_permission_again_from_the_context(harness: Harness, stage_env: dict[str, str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a push the authorizer's context does not allow is a 403 in the route too."""
    info = harness.connect("u-1", "ann")
    for name, value in stage_env.items():
        monkeypatch.setenv(name, value)
    runtime.rebuild()
    service = runtime.current().components
    for context in ({"principalId": "u-1", "groups": "staff", "scope": "openid"},
                    {"principalId": "u-1"},  # context entries dropped: fail closed
                    {"principalId": "u-1", "groups": "publishers-not", "scope": "ws-cognito/pushx"}):
        refused = rest.push(_request(context, '{"data": 1}'), service, "all")
        assert refused.status_code == 403
        assert json.loads(refused.body)["error"]["code"] == "forbidden"
    assert harness.management.total_posts == 0
    for context in ({"principalId": "p", "groups": "staff,publishers"}, {"principalId": "m", "scope": f"a {PUSH_SCOPE}"}):
        allowed = rest.push(_request(context, '{"data": 2}'), service, "all")
        assert (allowed.status_code, json.loads(allowed.body)["delivered"]) == (200, 1)
    assert [f["data"] for f in harness.raw_frames(info)] == [2, 2]


def test_the_caller_reads_the_context_as_aws_hands_it_over_stringified() -> None:
    who = rest.caller(_request({"principalId": "s-1", "sub": "s-1", "username": "ann", "token_use": "access",
                                "groups": "a,b", "scope": "x y", "exp": "1900000000"}))
    assert who.public() == {"sub": "s-1", "username": "ann", "token_use": "access", "groups": ["a", "b"],
                              "scopes": ["x", "y"]}


# -- the REST authorizer's path stays light ----------------------------------------------------


def test_rest_authorizer_path_never_imports_boto3(stage_env: dict[str, str], token_factory: TokenFactory) -> None:
    token = token_factory.access_token(sub="light", groups=("publishers",))
    event = {"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": REST_ARN.format("GET/me")}
    script = (
        "import json, sys\n"
        "import app\n"
        "answer = app.rest_authorizer(json.loads(sys.stdin.read()), None)\n"
        "assert answer['principalId'] == 'light', answer\n"
        "assert len(answer['policyDocument']['Statement'][0]['Resource']) == 5, answer\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))))\n"
        "print(json.dumps('chalice.local' in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(event), capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **stage_env}, timeout=60)
    assert done.returncode == 0, done.stderr
    *decision_log, modules, local_loaded = done.stdout.splitlines()
    assert json.loads(decision_log[-1])["decision"] == "allow"
    assert json.loads(modules) == []
    assert json.loads(local_loaded) is False  # on Lambda the 401 is the plain Exception('Unauthorized')


def test_outside_chalice_local_a_bad_token_raises_the_plain_lambda_error(stage_env: dict[str, str]) -> None:
    script = (
        "import json, sys\n"
        "import app\n"
        "try:\n"
        "    app.rest_authorizer({'type': 'TOKEN', 'authorizationToken': 'Bearer x.y.z',\n"
        "                         'methodArn': 'arn:aws:execute-api:us-east-1:1:a/s/GET/me'}, None)\n"
        "except Exception as error:\n"
        "    print(json.dumps([type(error).__module__, type(error).__name__, str(error)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **stage_env}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["builtins", "Exception", "Unauthorized"]
