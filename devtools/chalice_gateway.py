"""Chalice's local API Gateway (``chalice local``, ``chalice.test.Client``, ``make run``'s REST server),
made to answer two things as API Gateway does; the app stays unaware of where it runs. Dev-only.

- **A failing authorizer.** On Lambda, API Gateway reads an authorizer's error
  message: exactly ``Unauthorized`` is a 401, anything else a 500. Chalice's
  local gateway turns only its own exception classes into HTTP answers and
  drops the connection on any other.
- **Access logs.** Chalice's local server logs each request line whole, query
  string included: ``GET /me?access_token=<jwt>`` put a token in the log. Its
  lines keep the path and drop the query string.
- **Path parameters.** API Gateway hands them to the function decoded
  (``/topics/room%201/messages`` -> ``room 1``, ``a%2Fb`` -> ``a/b``); Chalice's
  local route matcher hands over the raw text. Invalid UTF-8 is decoded to lone
  surrogates, which the app's validation refuses.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

_INSTALLED = "_ws_cognito_errors_mapped"


def install() -> None:
    """Patch Chalice's local authorizer step and route matcher, once per process."""
    from chalice import local

    original = local.LocalGatewayAuthorizer.authorize
    if getattr(original, _INSTALLED, False):
        return
    match_route = local.RouteMatcher.match_route

    def decoded_match(self: Any, url: str) -> Any:
        matched = match_route(self, url)
        captured = {name: unquote(value, errors="surrogateescape") for name, value in matched.captured.items()}
        return local.MatchResult(matched.route, captured, matched.query_params)

    local.RouteMatcher.match_route = decoded_match  # type: ignore[method-assign]
    local.ChaliceRequestHandler.log_request = _log_request_without_query  # type: ignore[method-assign]

    def authorize(self: Any, raw_path: str, lambda_event: Any, lambda_context: Any) -> Any:
        try:
            return original(self, raw_path, lambda_event, lambda_context)
        except local.LocalGatewayException:
            raise
        except Exception as error:  # noqa: BLE001 - API Gateway's reading of an authorizer failure
            if str(error) == "Unauthorized":
                raise local.NotAuthorizedError(
                    {"x-amzn-ErrorType": "UnauthorizedException"}, b'{"message":"Unauthorized"}') from None
            raise local.InvalidAuthorizerError(
                {"x-amzn-ErrorType": "AuthorizerConfigurationException"}, b'{"message":null}') from None

    setattr(authorize, _INSTALLED, True)
    local.LocalGatewayAuthorizer.authorize = authorize  # type: ignore[method-assign]


def _log_request_without_query(self: Any, code: int | str = "-", size: int | str = "-") -> None:
    """BaseHTTPRequestHandler's access line, with the query string (which may carry a token) left out."""
    method, _, rest = str(getattr(self, "requestline", "")).partition(" ")
    target, _, version = rest.rpartition(" ")
    path = target.split("?", 1)[0] + ("?..." if "?" in target else "")
    self.log_message('"%s %s %s" %s %s', method, path, version, getattr(code, "value", code), size)
