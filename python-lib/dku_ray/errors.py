"""The exceptions dku_ray raises on purpose.

Every message is meant for the person who ran the macro or the command: it says what went
wrong and what to do next. Secrets never go into a message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


class DkuRayError(Exception):
    """Base class: catch this to handle every error dku_ray raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One bad field: where it is, what is wrong, and how to fix it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ProblemsError(DkuRayError):
    """An error that lists several problems at once, so that users fix them in one go."""

    title = "Invalid input"

    def __init__(self, problems: Iterable[Problem], title: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if title:
            self.title = title
        lines = [f"{self.title} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


class SpecError(ProblemsError, ValueError):
    """The cluster settings are invalid. Nothing was sent to Kubernetes."""

    exit_code = 2
    title = "Invalid Ray cluster settings"


class KubeconfigError(DkuRayError):
    """No usable kubeconfig: missing file, unknown context, unreadable."""


class KubernetesError(DkuRayError):
    """The Kubernetes API refused a request; `status` is the HTTP status when there is one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OperatorError(DkuRayError):
    """The KubeRay operator is missing, too old, or could not be installed or removed."""


class ClusterNotFoundError(DkuRayError):
    """The named RayCluster does not exist."""


class WaitTimeoutError(DkuRayError, TimeoutError):
    """A wait ran out of time; the message says what was still missing."""


class ClusterNotReadyError(WaitTimeoutError):
    """The RayCluster did not become ready in time; `reasons` says why, from pods and events."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        self.reasons = tuple(reasons)
        text = message
        if self.reasons:
            text += "\nWhy it is not ready:\n" + "\n".join(f"  - {r}" for r in self.reasons)
        super().__init__(text)


class TunnelError(DkuRayError):
    """The dashboard tunnel could not be opened or kept open."""


class PortInUseError(TunnelError):
    """The local port chosen for the tunnel is taken by another process."""


class ExposureRefusedError(TunnelError):
    """Binding the tunnel to a non-loopback address was refused for safety."""


class DSSError(DkuRayError):
    """A DSS object is missing, stopped, or not of a supported kind."""


class StorageError(DkuRayError):
    """S3 refused access, the credentials are wrong or expired, or a path is not usable."""


class PreflightError(ProblemsError):
    """A check before submitting a job failed. Nothing was submitted."""

    exit_code = 2
    title = "The training job cannot run as requested"


class JobError(DkuRayError):
    """The Ray job failed, was stopped, or timed out; `job_id` names it on the dashboard."""

    def __init__(self, message: str, job_id: str | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
