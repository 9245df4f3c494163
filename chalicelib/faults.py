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


def error_code(error: BaseException) -> str:
    """The error code botocore put on a ``ClientError`` (``""`` for anything else)."""
    response = getattr(error, "response", None)
    return str((response.get("Error") or {}).get("Code") or "") if isinstance(response, dict) else ""


def http_status(error: BaseException) -> int | None:
    """The HTTP status botocore put on a ``ClientError`` (None for anything else)."""
    response = getattr(error, "response", None)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return status if isinstance(status, int) else None


# What a stage is missing when AWS answers this way: reported by name, not as a bug.
_MISSING_BY_CLASS = {"NoRegionError": "AWS_REGION (no region is set)",
                     "NoCredentialsError": "AWS credentials (none were found)"}
_MISSING_BY_CODE = {"ResourceNotFoundException": "CONNECTIONS_TABLE (the table does not exist)",
                    "AWS.SimpleQueueService.NonExistentQueue": "FANOUT_QUEUE_URL (the queue does not exist)",
                    "QueueDoesNotExist": "FANOUT_QUEUE_URL (the queue does not exist)"}


def missing_configuration(error: BaseException) -> str | None:
    """The setting a stage lacks, when ``error`` says so (no region, no table, no queue); else None."""
    for cls in type(error).__mro__:
        if cls.__module__ == "botocore.exceptions" and cls.__name__ in _MISSING_BY_CLASS:
            return _MISSING_BY_CLASS[cls.__name__]
    return _MISSING_BY_CODE.get(error_code(error))


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` says an AWS dependency is unreachable, throttling or failing (retry later)."""
    for cls in type(error).__mro__:
        if cls.__module__ == "botocore.exceptions" and cls.__name__ in _TRANSPORT_ERRORS:
            return True
    status = http_status(error)
    return error_code(error) in _UNAVAILABLE_CODES or (status is not None and status >= 500)


__all__ = ["error_code", "http_status", "is_unavailable", "missing_configuration"]
