"""Locust users and a staged load shape for the e2e scenarios.

Run only through :mod:`harness.load` (a subprocess) or the in-cluster Locust job: Locust
monkey-patches the standard library with gevent, which must never happen inside pytest.

Environment knobs (set by :class:`harness.load.LocustRun`):

``HPA_KIT_STAGES``
    JSON list of ``[end_second, users, spawn_rate]``; the shape holds each stage until its end
    second and stops after the last one. Absent: Locust's own ``--users``/``--run-time`` apply.
``HPA_KIT_WORK_MS``
    How long each ``/work`` request holds a mockmetrics worker (default 300).
``HPA_KIT_BURN_MS``
    CPU milliseconds each ``/burn`` request spends in mockmetrics (default 5).
``HPA_KIT_WAIT``
    Seconds between a user's requests, ``min,max`` (default ``0.05,0.15``).
"""

from __future__ import annotations

import os

from locust import FastHttpUser, between, task

_wait = [float(x) for x in os.environ.get("HPA_KIT_WAIT", "0.05,0.15").split(",")]
_WORK_MS = int(os.environ.get("HPA_KIT_WORK_MS", "300"))
_BURN_MS = int(os.environ.get("HPA_KIT_BURN_MS", "5"))


class HitUser(FastHttpUser):
    """Raises ``total_hit_count`` and ``http_requests_total{path="/"}``: Object and Pods scenarios."""

    wait_time = between(_wait[0], _wait[-1])

    @task
    def hit(self) -> None:
        self.client.get("/", name="/")


# kube-proxy balances connections, not requests: a user that keeps one connection alive talks to
# the same pod forever, and pods added by the HPA get none of its work. Users whose metric is per
# pod (worker pool, queue) therefore open a fresh connection per request.
_NEW_CONNECTION = {"Connection": "close"}


class WorkUser(FastHttpUser):
    """Holds a pool worker per request, so ``pm_status{state="active processes"}`` tracks concurrency."""

    wait_time = between(_wait[0], _wait[-1])

    @task
    def work(self) -> None:
        with self.client.get(
            f"/work?ms={_WORK_MS}", name="/work", headers=_NEW_CONNECTION, catch_response=True
        ) as resp:
            # A saturated pool answering 503 is the signal the HPA is meant to fix, not a test error.
            if resp.status_code == 503:
                resp.success()


class BurnUser(FastHttpUser):
    """Spends real CPU in the pod it reaches: Resource / ContainerResource (CPU) scenarios."""

    wait_time = between(_wait[0], _wait[-1])

    @task
    def burn(self) -> None:
        with self.client.get(
            f"/burn?ms={_BURN_MS}", name="/burn", headers=_NEW_CONNECTION, catch_response=True
        ) as resp:
            if resp.status_code == 503:  # every burn thread busy: the overload the HPA is meant to fix
                resp.success()


class ProduceUser(FastHttpUser):
    """Produces queue jobs at a steady rate: External metric scenario."""

    wait_time = between(_wait[0], _wait[-1])

    @task
    def produce(self) -> None:
        self.client.post("/produce?n=1", name="/produce", headers=_NEW_CONNECTION)


# --- hpa-kit staged shape --------------------------------------------------------------------------
# harness.load appends everything from the line above to a project's own locustfile (one without a
# LoadTestShape of its own), so its users follow the same Stage list. Keep this section self-contained.
import json as _json  # noqa: E402
import os as _os  # noqa: E402

from locust import LoadTestShape as _LoadTestShape  # noqa: E402

_STAGES: list[list[float]] | None = (
    _json.loads(_os.environ["HPA_KIT_STAGES"]) if _os.environ.get("HPA_KIT_STAGES") else None
)

if _STAGES is not None:

    class StagedShape(_LoadTestShape):
        """Step load: ``[end_second, users, spawn_rate]`` stages, then stop."""

        stages: list[list[float]] = _STAGES or []

        def tick(self) -> tuple[int, float] | None:
            elapsed = self.get_run_time()
            for end, users, rate in self.stages:
                if elapsed < end:
                    return int(users), float(rate)
            return None
