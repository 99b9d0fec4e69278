"""Replica lifecycle: pure state machines for one replica and a set of them (no I/O, no clock; time is a parameter).

- :mod:`~kubeinfer.lifecycle.replica` -- one replica (a pod with one container, restartPolicy Always): phases,
  restarts, kill deadlines, exit classification.
- :mod:`~kubeinfer.lifecycle.probes` -- startup, readiness and liveness probes with the kubelet's semantics.
- :mod:`~kubeinfer.lifecycle.backoff` -- CrashLoopBackOff delays.
- :mod:`~kubeinfer.lifecycle.rollout` -- rolling updates and replica-count reconciliation (a Deployment controller).
- :mod:`~kubeinfer.lifecycle.canary` -- canary analysis: traffic steps, analysis windows, gates (Argo Rollouts, Flagger).

Each is ``step(event, now) -> actions`` or a function over frozen values; the shells (``kubeinfer.local``'s
controller) run the processes, the probes and the router updates the actions ask for. Kept apart from
``kubeinfer.local`` so that the layer and purity contracts in ``pyproject.toml`` hold them to the pure rules.
"""
