"""Create/update/delete one CloudFormation stack and read its outputs.

An update whose template is the one already deployed is skipped (compared
as parsed JSON), so a second ``make deploy`` touches nothing; real
CloudFormation's "No updates are to be performed" is treated the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from .aws import error_code
from .errors import StackFailed

Report = Callable[[str], None]

# Seconds between the waiters' DescribeStacks calls (their default is 30). moto, used by the
# tests, finishes each operation within the call, so there the first describe already succeeds.
POLL_DELAY = 5

_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}


@dataclass(frozen=True)
class StackResult:
    outputs: dict[str, str]
    changed: bool


def describe_stack(cfn: Any, name: str) -> dict[str, Any] | None:
    """The stack as DescribeStacks gives it; None if there is none (CloudFormation says so with an error)."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as error:
        if error_code(error) == "ValidationError" and "does not exist" in str(error):
            return None
        raise
    return stacks[0] if stacks else None


def _deployed_template(cfn: Any, name: str) -> Any:
    body = cfn.get_template(StackName=name)["TemplateBody"]
    return json.loads(body) if isinstance(body, str) else body


def stack_outputs(stack: dict[str, Any]) -> dict[str, str]:
    """A described stack's outputs, key -> value."""
    return {o["OutputKey"]: str(o["OutputValue"]) for o in stack.get("Outputs") or []}


def _status(described: dict[str, Any]) -> str | None:
    """The stack status in a DescribeStacks response; DELETE_COMPLETE once the stack is gone."""
    error = described.get("Error") or {}
    if error:
        gone = error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message"))
        return "DELETE_COMPLETE" if gone else None
    stacks = described.get("Stacks") or []
    return stacks[0].get("StackStatus") if stacks else "DELETE_COMPLETE"


def _wait(cfn: Any, name: str, waiter_name: str, timeout: float, report: Report) -> dict[str, Any] | None:
    """Run CloudFormation's ``waiter_name`` waiter; the stack at the end (None once deleted).

    Progress for work that takes minutes: each status the waiter's DescribeStacks
    calls see is reported when it changes (botocore's ``after-call`` event). A
    terminal failure state (e.g. ROLLBACK_COMPLETE) is returned, not raised: the
    caller reports it with the stack's failed events.
    """
    from botocore.exceptions import WaiterError

    last: str | None = None

    def progress(parsed: dict[str, Any], **_: Any) -> None:
        nonlocal last
        status = _status(parsed)
        if status and status != last:
            report(f"    stack {name}: {status}")
            last = status

    event, hook_id = "after-call.cloudformation.DescribeStacks", f"deploy-progress-{name}"
    cfn.meta.events.register(event, progress, unique_id=hook_id)
    try:
        cfn.get_waiter(waiter_name).wait(StackName=name, WaiterConfig={
            "Delay": POLL_DELAY, "MaxAttempts": max(1, math.ceil(timeout / POLL_DELAY))})
    except WaiterError as error:
        if "Max attempts exceeded" in str(error):
            raise StackFailed(f"stack {name} still {last or 'not described'} after {timeout:.0f} s") from None
        if _status(error.last_response) is None:  # an error answer (access denied...), not a stack state
            raise StackFailed(f"waiting for stack {name}: {error}") from None
    finally:
        cfn.meta.events.unregister(event, unique_id=hook_id)
    return describe_stack(cfn, name)


def _delete_and_wait(cfn: Any, name: str, timeout: float, report: Report) -> None:
    cfn.delete_stack(StackName=name)
    stack = _wait(cfn, name, "stack_delete_complete", timeout, report)
    if stack is not None and stack["StackStatus"] != "DELETE_COMPLETE":
        raise StackFailed(f"stack {name} ended {stack['StackStatus']}: {_failure_reasons(cfn, name)}")


def _failure_reasons(cfn: Any, name: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    except Exception:  # the reasons are a courtesy; the failure is reported either way
        return ""
    reasons = [f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
               for e in events if str(e.get("ResourceStatus", "")).endswith("FAILED")
               and e.get("ResourceStatusReason")]
    return "; ".join(reasons[:5])


def deploy_stack(cfn: Any, name: str, template: dict[str, Any], tags: dict[str, str],
                 report: Report, timeout: float = 1800.0) -> StackResult:
    existing = describe_stack(cfn, name)
    body = json.dumps(template, indent=1, sort_keys=True)
    tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        # A stack whose creation failed cannot be updated; it holds nothing.
        report(f"    stack {name} is ROLLBACK_COMPLETE from a failed create; deleting it first")
        _delete_and_wait(cfn, name, timeout, report)
        existing = None
    if existing is None:
        report(f"    creating stack {name}")
        cfn.create_stack(StackName=name, TemplateBody=body, Tags=tag_list,
                         Capabilities=["CAPABILITY_IAM"], OnFailure="ROLLBACK")
        waiter = "stack_create_complete"
    elif _deployed_template(cfn, name) == json.loads(body):
        report(f"    stack {name} is up to date")
        return StackResult(outputs=stack_outputs(existing), changed=False)
    else:
        report(f"    updating stack {name}")
        try:
            cfn.update_stack(StackName=name, TemplateBody=body, Tags=tag_list, Capabilities=["CAPABILITY_IAM"])
        except Exception as error:
            if error_code(error) == "ValidationError" and "No updates are to be performed" in str(error):
                report(f"    stack {name} is up to date")
                return StackResult(outputs=stack_outputs(existing), changed=False)
            raise
        waiter = "stack_update_complete"
    stack = _wait(cfn, name, waiter, timeout, report)
    status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
    if status not in _DONE_OK:
        reasons = _failure_reasons(cfn, name)
        raise StackFailed(f"stack {name} ended {status}" + (f": {reasons}" if reasons else ""))
    assert stack is not None
    return StackResult(outputs=stack_outputs(stack), changed=True)


def delete_stack(cfn: Any, name: str, report: Report, timeout: float = 1800.0) -> bool:
    """Delete the stack; False if there was none."""
    if describe_stack(cfn, name) is None:
        report(f"    stack {name} does not exist")
        return False
    report(f"    deleting stack {name}")
    _delete_and_wait(cfn, name, timeout, report)
    return True
