"""Chalice's local API Gateway answering a failing authorizer as API Gateway does.

On Lambda, API Gateway reads an authorizer's error message: exactly
``Unauthorized`` is a 401, anything else a 500. Chalice's local gateway (``chalice
local``, ``chalice.test.Client``, the REST server of ``make run``) turns only its
own exception classes into HTTP answers and drops the connection on any other.
``install()`` wraps its authorizer step so an ``Exception("Unauthorized")`` is
answered 401 and any other exception 500, as on AWS; the app stays unaware of
where it runs. Dev-only: never shipped to Lambda.
"""
from __future__ import annotations

from typing import Any

_INSTALLED = "_ws_cognito_errors_mapped"


def install() -> None:
    """Patch ``chalice.local.LocalGatewayAuthorizer.authorize`` once per process."""
    from chalice import local

    original = local.LocalGatewayAuthorizer.authorize
    if getattr(original, _INSTALLED, False):
        return

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
