"""Turn a REQUEST authorizer's outcome into API Gateway's answer.

API Gateway's rules, reproduced so an authorizer that works here works on AWS:

* the Lambda raised an error whose message is exactly ``Unauthorized`` -> 401;
* any other error, or an answer that is not a well-formed policy
  (no ``principalId``, no ``policyDocument.Statement``, a ``context`` value
  that is not a string/number/boolean) -> 500;
* an explicit ``Deny`` matching the method ARN, or no ``Allow`` matching it
  -> 403;
* otherwise the connection is allowed and ``requestContext.authorizer`` of
  every later event is ``{**context, "principalId": principalId}``.

Policy caching (authorizer TTL) and identity-source pre-checks are not
emulated: the authorizer runs on every upgrade request.
"""
from __future__ import annotations

import re
from typing import Any

UNAUTHORIZED_MESSAGE = "Unauthorized"
INVOKE_ACTION = "execute-api:Invoke"


class AuthorizerRejection(Exception):
    """The upgrade must be refused with ``status``; ``detail`` is for logs only."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def rejection_for_exception(error: BaseException) -> AuthorizerRejection:
    """Map an exception raised by the authorizer Lambda to 401 or 500."""
    if str(error) == UNAUTHORIZED_MESSAGE:
        return AuthorizerRejection(401, "authorizer raised Unauthorized")
    return AuthorizerRejection(500, f"authorizer failed: {type(error).__name__}")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value]


def _glob(pattern: str) -> re.Pattern[str]:
    """IAM wildcard semantics: ``*`` any run of characters, ``?`` one character."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _matches_action(actions: list[Any]) -> bool:
    return any(
        isinstance(action, str) and _glob(action.lower()).match(INVOKE_ACTION.lower())
        for action in actions
    )


def _matches_resource(resources: list[Any], method_arn: str) -> bool:
    return any(isinstance(res, str) and _glob(res).match(method_arn) for res in resources)


def _statements(result: dict[str, Any]) -> list[dict[str, Any]]:
    document = result.get("policyDocument")
    if not isinstance(document, dict):
        raise AuthorizerRejection(500, "authorizer answer has no policyDocument object")
    statements = document.get("Statement")
    if statements is None:
        raise AuthorizerRejection(500, "policyDocument has no Statement")
    statements = _as_list(statements)
    for statement in statements:
        if not isinstance(statement, dict):
            raise AuthorizerRejection(500, "policy Statement is not an object")
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise AuthorizerRejection(500, "policy Statement Effect is not Allow/Deny")
        if "Action" not in statement or "Resource" not in statement:
            raise AuthorizerRejection(500, "policy Statement lacks Action or Resource")
    return statements


def _context(result: dict[str, Any]) -> dict[str, Any]:
    context = result.get("context")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise AuthorizerRejection(500, "authorizer context is not an object")
    for key, value in context.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise AuthorizerRejection(
                500, f"authorizer context value for {key!r} is not a string, number or boolean"
            )
    return context


def evaluate(result: Any, method_arn: str) -> dict[str, Any]:
    """Return ``requestContext.authorizer`` for an allowed connection, else raise."""
    if not isinstance(result, dict):
        raise AuthorizerRejection(500, "authorizer answer is not an object")
    principal = result.get("principalId")
    if principal is None or isinstance(principal, (dict, list)):
        raise AuthorizerRejection(500, "authorizer answer has no principalId")
    statements = _statements(result)
    context = _context(result)
    allowed = False
    for statement in statements:
        if not _matches_action(_as_list(statement["Action"])):
            continue
        if not _matches_resource(_as_list(statement["Resource"]), method_arn):
            continue
        if statement["Effect"] == "Deny":
            raise AuthorizerRejection(403, "policy denies the method ARN")
        allowed = True
    if not allowed:
        raise AuthorizerRejection(403, "policy does not allow the method ARN")
    return {**context, "principalId": principal}
