"""Readiness and 'why not ready' on plain API objects (the cases kwok cannot produce for real)."""
from __future__ import annotations

from dku_ray.readiness import diagnose, evaluate, pod_problem


def pod(name: str, node_type: str = "worker", phase: str = "Running", ready: bool = True, **status) -> dict:
    return {"metadata": {"name": name, "labels": {"ray.io/node-type": node_type, "ray.io/group": "g"}},
            "spec": {"containers": [{"name": "ray"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       **status}}


def raycluster(replicas: int = 1, generation: int = 1, observed: int = 1, ready_workers: int | None = 1) -> dict:
    status = {"observedGeneration": observed, "conditions": [{"type": "HeadPodReady", "status": "True"}]}
    if ready_workers is not None:
        status["readyWorkerReplicas"] = ready_workers
    return {"metadata": {"name": "r", "generation": generation},
            "spec": {"workerGroupSpecs": [{"groupName": "g", "replicas": replicas, "minReplicas": replicas,
                                           "maxReplicas": replicas}]},
            "status": status}


def test_ready_needs_head_current_status_and_all_workers():
    pods = [pod("h", "head"), pod("w1")]
    assert evaluate(raycluster(), pods).ready
    assert not evaluate(raycluster(generation=2), pods).ready  # status describes an older spec
    assert not evaluate(raycluster(replicas=2, ready_workers=2), pods).ready  # one worker missing
    assert not evaluate(raycluster(ready_workers=0), pods).ready  # operator has not counted it yet
    assert not evaluate(raycluster(), [pod("h", "head", ready=False), pod("w1")]).ready


def test_state_ready_alone_is_not_trusted():
    cluster = raycluster(replicas=2, ready_workers=None)
    cluster["status"]["state"] = "ready"
    result = evaluate(cluster, [pod("h", "head"), pod("w1"), pod("w2", phase="Pending", ready=False)])
    assert not result.ready and result.summary == "2/3 Ray pods ready"


def test_image_pull_crash_loop_and_oom_reasons():
    waiting = {"containerStatuses": [{"name": "ray", "image": "rayproject/ray:9.9.9", "ready": False,
                                      "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}
    assert "cannot pull image rayproject/ray:9.9.9" in pod_problem(pod("a", phase="Pending", ready=False, **waiting))
    crash = {"containerStatuses": [{"name": "ray", "ready": False, "restartCount": 4,
                                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
    assert "keeps crashing (4 restarts, last exit code 1" in pod_problem(pod("b", ready=False, **crash))
    oom = {"containerStatuses": [{"name": "ray", "ready": False, "state": {"running": {}},
                                  "lastState": {"terminated": {"reason": "OOMKilled"}}}]}
    assert "OOMKilled" in pod_problem(pod("c", ready=False, **oom))


def test_quota_and_scheduling_events():
    events = [{"type": "Warning", "reason": "FailedToCreateWorkerPod", "involvedObject": {"name": "r"},
               "message": 'pods "r-g-worker-x" is forbidden: exceeded quota: q, requested: cpu=1'},
              {"type": "Warning", "reason": "FailedScheduling", "involvedObject": {"name": "w9"},
               "message": "0/2 nodes are available: 2 Insufficient memory."},
              {"type": "Normal", "reason": "Created", "involvedObject": {"name": "r"}, "message": "ok"}]
    reasons = diagnose(raycluster(), [], events)
    assert any("exceeded quota" in r and "ResourceQuota" in r for r in reasons)
    assert any("Insufficient memory" in r and "less memory" in r for r in reasons)
    assert len(reasons) == 2
