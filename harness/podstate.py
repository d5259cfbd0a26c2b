"""Pod states that cannot resolve by themselves, named so a wait can stop at once.

A wait on a rollout used to run out its whole timeout (600 s) on a pod whose image was never loaded.
The kubelet says so within seconds, in the container's ``waiting.reason``: :func:`blockers` reads
those reasons, and :func:`raise_if_stuck` turns them into :class:`harness.waits.Unresolvable`, which
:func:`harness.waits.wait_for` re-raises immediately instead of polling on.

What counts as stuck (each message names the pod, container, image, reason and what to do):

* ``ErrImagePull``, ``ImagePullBackOff``, ``ErrImageNeverPull``, ``InvalidImageName``: the image is
  not on the node and cannot be pulled (local and kind clusters never pull; on other clusters the
  kubelet's own back-off already means a retry failed);
* ``CrashLoopBackOff`` once the container restarted ``max_restarts`` times;
* ``CreateContainerConfigError`` / ``CreateContainerError`` once the pod is ``config_grace_s`` old
  (a Secret or ConfigMap applied in the same batch may arrive a moment after the pod).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from harness.waits import Unresolvable

__all__ = ["IMAGE_REASONS", "blockers", "raise_if_stuck"]

IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
MAX_RESTARTS = 4
CONFIG_GRACE_S = 45.0

_REMEDY = {
    "image": "the image is not on the node: load it (`hpa-kit load-images IMAGE` on local/kind clusters) "
    "or push it where the cluster can pull it",
    "crash": "the container keeps exiting: read `kubectl -n {ns} logs {pod} -c {c} --previous`",
    "config": "the container cannot be created: `kubectl -n {ns} describe pod {pod}` (a missing "
    "Secret/ConfigMap key, a bad securityContext)",
}


def _age_s(pod: Mapping[str, Any], now: dt.datetime) -> float:
    created = (pod.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return 0.0
    when = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (now - when).total_seconds()


def blockers(
    pod: Mapping[str, Any],
    *,
    max_restarts: int = MAX_RESTARTS,
    config_grace_s: float = CONFIG_GRACE_S,
    now: dt.datetime | None = None,
) -> list[str]:
    """One line per container of ``pod`` that is stuck in a state it cannot leave by itself."""
    now = now or dt.datetime.now(dt.UTC)
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ns, name = meta.get("namespace", "default"), meta.get("name", "?")
    out: list[str] = []
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        restarts = int(cs.get("restartCount") or 0)
        if reason in IMAGE_REASONS:
            kind = "image"
        elif reason == "CrashLoopBackOff" and restarts >= max_restarts:
            kind = "crash"
        elif reason in CONFIG_REASONS and _age_s(pod, now) >= config_grace_s:
            kind = "config"
        else:
            continue
        c = cs.get("name", "?")
        detail = (waiting.get("message") or "").strip().splitlines()
        what = f"{reason} after {restarts} restarts" if kind == "crash" else reason
        line = f"pod {ns}/{name} container {c} image {cs.get('image', '?')}: {what}"
        if detail:
            line += f" ({detail[0][:300]})"
        out.append(f"{line}; {_REMEDY[kind].format(ns=ns, pod=name, c=c)}")
    return out


def raise_if_stuck(pods: Iterable[Mapping[str, Any]], what: str, **kw: Any) -> None:
    """Raise :class:`Unresolvable` naming every stuck container of ``pods`` (``what`` is being waited on)."""
    found = [line for pod in pods for line in blockers(pod, **kw)]
    if found:
        raise Unresolvable(f"{what} cannot become ready:\n  " + "\n  ".join(found))
