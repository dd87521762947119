"""The errors the simulator answers with, in the two shapes the real cloud uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class SimError(Exception):
    """A refusal: `ecs` shape `{"error": {"message", "code"}}` or API gateway shape `{"error_msg", ...}`."""

    status: int
    code: str
    message: str
    shape: Literal["ecs", "gateway"] = "ecs"
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self, request_id: str) -> dict[str, Any]:
        if self.shape == "gateway":
            return {"error_msg": self.message, "error_code": self.code, "request_id": request_id}
        return {"error": {"message": self.message, "code": self.code}}


def gateway_error(status: int, code: str, message: str, **headers: str) -> SimError:
    return SimError(status, code, message, "gateway", dict(headers))


def bad_request(message: str, code: str = "Ecs.0005") -> SimError:
    return SimError(400, code, message)
