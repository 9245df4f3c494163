"""Telling "a dependency is down" apart from "this code is wrong", without importing botocore.

A client that gets ``internal_error`` can only report a bug; one that gets
``unavailable`` knows to try again later: DynamoDB (or another AWS service)
could not be reached, timed out, throttled or answered 5xx, and the same
frame will work once it is back (the boto3 client reconnects by itself, no
restart needed). Classified by botocore's exception classes, found by name
in the error's class hierarchy, and by the ``response`` dict botocore puts
on a ``ClientError``, so this module stays pure (standard library only).
"""
from __future__ import annotations

# botocore.exceptions bases: ConnectionError (connection refused, connect
# timeout, DNS; nothing was sent) and HTTPClientError (read timeout,
# connection closed mid-answer).
_TRANSPORT_ERRORS = frozenset({"ConnectionError", "HTTPClientError"})
# Error codes that mean "overloaded or down", whatever the HTTP status.
_UNAVAILABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException", "LimitExceededException",
})


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` says an AWS dependency is unreachable, throttling or failing (retry later)."""
    for cls in type(error).__mro__:
        if cls.__module__ == "botocore.exceptions" and cls.__name__ in _TRANSPORT_ERRORS:
            return True
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in _UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500)


__all__ = ["is_unavailable"]
