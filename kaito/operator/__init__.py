"""kaito.operator: the thin wrapper that runs the reconciler inside a cluster.

It holds no business logic. Watches on Workspaces and on the objects kaito creates for them
(NodeClaims, Nodes, StatefulSets, Services, Pods, Jobs, ConfigMaps, matched by the
`kaito.sh/workspace` labels) turn changes into workspace keys; a de-duplicating work queue
with per-key exponential backoff hands them to a bounded number of workers, each calling
`Reconciler.reconcile(key)`. Leader election on a Lease makes one replica the active one; the
others stand by. `/healthz`, `/readyz` and Prometheus `/metrics` are served over HTTP; logs are
structured (`key=value` text, or JSON lines). SIGTERM or SIGINT stops taking work, lets running
reconciles finish (within the shutdown timeout) and releases the lease.

Readiness: `/readyz` is 200 for the leader once every watch has listed (synced), and for a
follower standing by for the lease; it is 503 while the leader loads its caches and during
shutdown. `/healthz` is 200 until the operator loop fails.

`kaito operator run` options. Every flag can also be set through the environment variable
named after it; a flag given on the command line wins over the variable:

    --kubeconfig PATH              KAITO_KUBECONFIG          (default: in-cluster service
                                                              account, else $KUBECONFIG or
                                                              ~/.kube/config)
    --context NAME                 KAITO_CONTEXT             (default: current context)
    --provisioner NAME             KAITO_PROVISIONER         (default: karpenter)
    --provisioner-option K=V       KAITO_PROVISIONER_OPTION  (repeatable; the variable takes
                                                              K=V,K2=V2)
    --runtime NAME                 KAITO_RUNTIME             (default: hf)
    --disable-node-auto-provisioning
                                   KAITO_DISABLE_NODE_AUTO_PROVISIONING  (true/false)
    --concurrency N                KAITO_CONCURRENCY         (default: 4)
    --leader-election, --no-leader-election
                                   KAITO_LEADER_ELECTION     (default: true)
    --lease-name NAME              KAITO_LEASE_NAME          (default:
                                                              kaito-workspace-controller)
    --lease-namespace NAMESPACE    KAITO_LEASE_NAMESPACE     (default: kaito-system)
    --lease-duration SECONDS       KAITO_LEASE_DURATION      (default: 15)
    --renew-deadline SECONDS       KAITO_RENEW_DEADLINE      (default: 10)
    --retry-period SECONDS         KAITO_RETRY_PERIOD        (default: 2)
    --identity NAME                KAITO_IDENTITY            (default: host name + suffix)
    --metrics-addr HOST:PORT       KAITO_METRICS_ADDR        (default: 0.0.0.0:8080)
    --health-addr HOST:PORT        KAITO_HEALTH_ADDR         (default: 0.0.0.0:8081)
    --log-format text|json         KAITO_LOG_FORMAT          (default: text)
    --log-level LEVEL              KAITO_LOG_LEVEL           (default: info)
    --backoff-base SECONDS         KAITO_BACKOFF_BASE        (default: 0.5)
    --backoff-cap SECONDS          KAITO_BACKOFF_CAP         (default: 300)
    --shutdown-timeout SECONDS     KAITO_SHUTDOWN_TIMEOUT    (default: 30)

The provisioner is `default_registry().provisioner(NAME)` called with a `ProvisionerContext`
holding the client and the `--provisioner-option` pairs; a name that is not installed fails
with the registry's `PluginNotFound`, which names the extra to install.

Embedding: `Operator(client, reconciler, settings)` runs any object that satisfies the
`kaito.reconcile.Reconciler` protocol; `operator_manifests(image, namespace)` gives the
install manifests (the Helm chart in `charts/kaito` renders the same objects).
"""

from kaito.operator._build import run_workspace_operator, workspace_reconciler
from kaito.operator._clock import Clock, ManualClock, SystemClock
from kaito.operator._leader import LeaderElector
from kaito.operator._logging import JsonFormatter, TextFormatter, configure_logging
from kaito.operator._manifests import (
    LEASE_RULES,
    PROVISIONER_RULES,
    cluster_role_rules,
    operator_manifests,
)
from kaito.operator._metrics import OperatorMetrics
from kaito.operator._operator import Operator, run_operator
from kaito.operator._queue import WorkQueue
from kaito.operator._settings import (
    OPTIONS,
    OperatorSettings,
    Option,
    SettingsError,
    parse_pairs,
    settings_from,
)
from kaito.operator._watch import CHILD_KINDS, CHILD_SELECTOR, Informer, workspace_key

__all__ = [
    "CHILD_KINDS",
    "CHILD_SELECTOR",
    "LEASE_RULES",
    "OPTIONS",
    "PROVISIONER_RULES",
    "Clock",
    "Informer",
    "JsonFormatter",
    "LeaderElector",
    "ManualClock",
    "Operator",
    "OperatorMetrics",
    "OperatorSettings",
    "Option",
    "SettingsError",
    "SystemClock",
    "TextFormatter",
    "WorkQueue",
    "cluster_role_rules",
    "configure_logging",
    "operator_manifests",
    "parse_pairs",
    "run_operator",
    "run_workspace_operator",
    "settings_from",
    "workspace_key",
    "workspace_reconciler",
]
