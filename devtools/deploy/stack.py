"""Create/update/delete one CloudFormation stack and read its outputs.

An update whose template is the one already deployed is skipped (compared
as parsed JSON), so a second ``make deploy`` touches nothing; real
CloudFormation's "No updates are to be performed" is treated the same way.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from .aws import error_code
from .errors import StackFailed

Report = Callable[[str], None]

_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
_DONE_BAD = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED",
             "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "UPDATE_FAILED"}


@dataclass(frozen=True)
class StackResult:
    outputs: dict[str, str]
    changed: bool


def _describe(cfn: Any, name: str) -> dict[str, Any] | None:
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


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: str(o["OutputValue"]) for o in stack.get("Outputs") or []}


def _wait(cfn: Any, name: str, timeout: float, report: Report) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    delay, last = 0.2, ""
    while True:
        stack = _describe(cfn, name)
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if status != last:
            report(f"    stack {name}: {status}")
            last = status
        if not status.endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() >= deadline:
            raise StackFailed(f"stack {name} still {status} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


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
    existing = _describe(cfn, name)
    body = json.dumps(template, indent=1, sort_keys=True)
    tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        # A stack whose creation failed cannot be updated; it holds nothing.
        report(f"    stack {name} is ROLLBACK_COMPLETE from a failed create; deleting it first")
        cfn.delete_stack(StackName=name)
        _wait(cfn, name, timeout, report)
        existing = None
    if existing is None:
        report(f"    creating stack {name}")
        cfn.create_stack(StackName=name, TemplateBody=body, Tags=tag_list,
                         Capabilities=["CAPABILITY_IAM"], OnFailure="ROLLBACK")
        changed = True
    elif _deployed_template(cfn, name) == json.loads(body):
        report(f"    stack {name} is up to date")
        return StackResult(outputs=_outputs(existing), changed=False)
    else:
        report(f"    updating stack {name}")
        try:
            cfn.update_stack(StackName=name, TemplateBody=body, Tags=tag_list, Capabilities=["CAPABILITY_IAM"])
        except Exception as error:
            if error_code(error) == "ValidationError" and "No updates are to be performed" in str(error):
                report(f"    stack {name} is up to date")
                return StackResult(outputs=_outputs(existing), changed=False)
            raise
        changed = True
    stack = _wait(cfn, name, timeout, report)
    status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
    if status not in _DONE_OK:
        reasons = _failure_reasons(cfn, name)
        raise StackFailed(f"stack {name} ended {status}" + (f": {reasons}" if reasons else ""))
    assert stack is not None
    return StackResult(outputs=_outputs(stack), changed=changed)


def delete_stack(cfn: Any, name: str, report: Report, timeout: float = 1800.0) -> bool:
    """Delete the stack; False if there was none."""
    if _describe(cfn, name) is None:
        report(f"    stack {name} does not exist")
        return False
    report(f"    deleting stack {name}")
    cfn.delete_stack(StackName=name)
    stack = _wait(cfn, name, timeout, report)
    if stack is not None and stack["StackStatus"] != "DELETE_COMPLETE":
        raise StackFailed(f"stack {name} ended {stack['StackStatus']}: {_failure_reasons(cfn, name)}")
    return True
