"""Typed deploy errors: each says what went wrong and what to do about it."""
from __future__ import annotations


class DeployError(RuntimeError):
    """A deploy/delete/package step failed; the message is meant for the person running make."""


class UnknownStage(DeployError):
    def __init__(self, stage: str, known: list[str]) -> None:
        super().__init__(f"unknown stage {stage!r}: .chalice/config.json defines {', '.join(known) or 'none'}")
        self.stage = stage


class NoCredentials(DeployError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "no usable AWS credentials: " + detail
            + " (configure them with `aws configure`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")


class NoRegion(DeployError):
    def __init__(self) -> None:
        super().__init__("no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile region)")


class CommandFailed(DeployError):
    def __init__(self, command: list[str], code: int) -> None:
        super().__init__(f"`{' '.join(command)}` failed with exit code {code} (its output is above)")
        self.code = code


class StackFailed(DeployError):
    """A CloudFormation stack ended in a failed state."""
