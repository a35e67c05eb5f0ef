"""What a federation installs in its host cluster: namespace, CRDs, RBAC. Pure manifests.

The federation's declarative state lives in CRDs of the ``fleetflow.io`` group, so that
``kubectl get memberclusters -n fleetflow-system`` shows the federation:

- ``MemberCluster``: the registry. Spec names the member's credentials block (never a secret);
  status holds health and capacity.
- ``FederatedDeployment``: a Deployment (or StatefulSet) template, a placement and per-cluster
  overrides; the planner divides its replicas.
- ``FederatedObject``: any other namespaced object (ConfigMap, Secret, Service, a custom
  resource...), placed like a workload or following the workloads that reference it.
- ``FederationOperation``: the durable record of a multi-step procedure (failover, migration),
  so that a rerun resumes where it stopped and an interrupted run leaves an audit trail.
- ``DNSEndpoint`` (``externaldns.k8s.io``, ExternalDNS's CRD), installed only if absent.
"""

from __future__ import annotations

from typing import Any

GROUP = "fleetflow.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DNS_GROUP = "externaldns.k8s.io"
DNS_CRD_NAME = f"dnsendpoints.{DNS_GROUP}"

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
LABEL_FEDERATION = "fleetflow.io/federation"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGED_BY = "fleetflow"

MIN_HOST_MINOR = 30
"""Oldest Kubernetes 1.x minor accepted as a host: CEL validation and SSA are GA from 1.30."""

Manifest = dict[str, Any]

_ANY: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_CONDITIONS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": _STR,
            "status": _STR,
            "reason": _STR,
            "message": _STR,
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    },
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def _crd(
    kind: str,
    plural: str,
    short: list[str],
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, Any]],
    group: str = GROUP,
    version: str = VERSION,
) -> Manifest:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {LABEL_MANAGED: MANAGED_BY}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["fleetflow"] if group == GROUP else [],
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        *columns,
                        _column("Age", ".metadata.creationTimestamp", "date"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec, "status": status},
                        }
                    },
                }
            ],
        },
    }


def member_cluster_crd() -> Manifest:
    spec = {
        "type": "object",
        "required": ["federation", "credentialsBlock", "apiURL"],
        "properties": {
            "federation": _STR,
            "credentialsBlock": {**_STR, "description": "KubeCluster block; never a secret"},
            "apiURL": _STR,
            "region": _STR,
            "zone": _STR,
            "labels": _STR_MAP,
            "ingressAddress": _STR,
            "serviceAccount": _STR,
            "fenced": {"type": "boolean"},
            "taints": {"type": "array", "items": _TAINT},
            "namespaces": {"type": "array", "items": _STR},
        },
    }
    status = {
        "type": "object",
        "properties": {
            "conditions": _CONDITIONS,
            "kubernetesVersion": _STR,
            "health": _STR,
            "consecutiveFailures": _INT,
            "consecutiveSuccesses": _INT,
            "healthSince": {"type": "string", "format": "date-time"},
            "allocatable": _STR_MAP,
            "nodesReady": _INT,
            "nodesTotal": _INT,
        },
    }
    columns = [
        _column("Region", ".spec.region"),
        _column("Zone", ".spec.zone"),
        _column("Health", ".status.health"),
        _column("Taints", ".spec.taints[*].key"),
        _column("Version", ".status.kubernetesVersion"),
        _column("Nodes", ".status.nodesReady", "integer"),
        _column("API", ".spec.apiURL", priority=1),
    ]
    return _crd("MemberCluster", "memberclusters", ["mc"], spec, status, columns)


_REQUIREMENT: dict[str, Any] = {
    "type": "object",
    "required": ["key", "operator"],
    "properties": {
        "key": {**_STR, "minLength": 1},
        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": _STR},
    },
    "x-kubernetes-validations": [
        {
            "rule": "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : "
            "!has(self.values) || size(self.values) == 0",
            "message": "In and NotIn need values; Exists and DoesNotExist take none",
        }
    ],
}

_SELECTOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "matchLabels": _STR_MAP,
        "matchExpressions": {"type": "array", "items": _REQUIREMENT},
    },
}

_EFFECT: dict[str, Any] = {"type": "string", "enum": ["NoSchedule", "NoExecute"]}

_TAINT: dict[str, Any] = {
    "type": "object",
    "required": ["key", "effect"],
    "properties": {"key": {**_STR, "minLength": 1}, "value": _STR, "effect": _EFFECT},
}

_TOLERATION: dict[str, Any] = {
    "type": "object",
    "required": ["key"],
    "properties": {
        "key": {**_STR, "minLength": 1},
        "operator": {"type": "string", "enum": ["Equal", "Exists"]},
        "value": _STR,
        "effect": _EFFECT,
    },
    "x-kubernetes-validations": [
        {
            "rule": "self.key != 'fleetflow.io/fenced'",
            "message": "a fence cannot be tolerated",
        },
        {
            "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) "
            "|| self.value == ''",
            "message": "operator Exists takes no value",
        },
    ],
}

_SPREAD: dict[str, Any] = {
    "type": "object",
    "required": ["spreadBy"],
    "properties": {
        "spreadBy": {
            **_STR,
            "minLength": 1,
            "description": "cluster, region, zone, or a member label key (e.g. provider)",
        },
        "minGroups": {**_INT, "minimum": 1},
        "maxGroups": {**_INT, "minimum": 1},
    },
    "x-kubernetes-validations": [
        {
            "rule": "!has(self.maxGroups) || (has(self.minGroups) ? self.minGroups : 1) "
            "<= self.maxGroups",
            "message": "minGroups must not be above maxGroups",
        }
    ],
}

_PLACEMENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "clusters": {"type": "array", "items": _STR},
        "clusterSelector": _SELECTOR,
        "affinityGroups": {
            "type": "array",
            "description": "Ordered fallbacks: the first group that can hold the workload",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {**_STR, "minLength": 1},
                    "clusters": {"type": "array", "items": _STR, "minItems": 1},
                    "clusterSelector": _SELECTOR,
                },
            },
        },
        "spreadConstraints": {"type": "array", "items": _SPREAD},
        "tolerations": {"type": "array", "items": _TOLERATION},
        "weights": {"type": "object", "additionalProperties": _INT},
        "min": {"type": "object", "additionalProperties": _INT},
        "max": {"type": "object", "additionalProperties": _INT},
        "mode": {"type": "string", "enum": ["Weighted", "Capacity"]},
    },
}


_AUTOSCALING: dict[str, Any] = {
    "type": "object",
    "description": "One replica budget across the federation: each member's HPA scales within "
    "its share of minReplicas..maxReplicas, and budget moves to members at their max",
    "required": ["maxReplicas"],
    "properties": {
        "minReplicas": {**_INT, "minimum": 1, "default": 1},
        "maxReplicas": {**_INT, "minimum": 1},
        "metrics": {
            "type": "array",
            "description": "The members' HPA metrics (autoscaling/v2 MetricSpec)",
            "items": {**_ANY, "required": ["type"]},
        },
        "behavior": {**_ANY, "description": "The members' HPA behavior (autoscaling/v2)"},
        "maxBudgetMove": {
            **_INT,
            "minimum": 1,
            "description": "Replicas of max budget moved per run (default: a tenth of max)",
        },
        "hysteresis": {
            **_INT,
            "minimum": 0,
            "description": "Replicas a donor keeps above what it uses (default 1)",
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": "self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not be above maxReplicas",
        }
    ],
}


def federated_deployment_crd() -> Manifest:
    override = {
        "type": "object",
        "required": ["clusterName"],
        "properties": {
            "clusterName": _STR,
            "image": _STR,
            "patch": _ANY,
        },
    }
    spec = {
        "type": "object",
        "required": ["template"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "kind": {
                "type": "string",
                "enum": ["Deployment", "StatefulSet"],
                "default": "Deployment",
                "description": "What each member runs; fixed once created",
                "x-kubernetes-validations": [
                    {
                        "rule": "self == oldSelf",
                        "message": "kind cannot change: delete the workload and create it again",
                    }
                ],
            },
            "template": {
                **_ANY,
                "description": "A Deployment's (or StatefulSet's) metadata and spec",
            },
            "placement": _PLACEMENT,
            "overrides": {"type": "array", "items": override},
            "dns": {
                "type": "object",
                "required": ["hostname"],
                "properties": {"hostname": _STR, "ttl": {**_INT, "minimum": 1}},
            },
            "data": {
                "type": "object",
                "description": "The workload's data, for migration: a residency rule of the "
                "federation, and the external datasets it reads",
                "properties": {
                    "residency": _STR,
                    "datasets": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "region", "sizeGB"],
                            "properties": {
                                "name": _STR,
                                "region": _STR,
                                "sizeGB": {"type": "number", "minimum": 0},
                            },
                        },
                    },
                },
            },
            "autoscaling": _AUTOSCALING,
        },
    }
    status = {
        "type": "object",
        "properties": {
            "conditions": _CONDITIONS,
            "observedGeneration": _INT,
            "clusters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": _STR,
                        "desired": _INT,
                        "ready": _INT,
                        "minReplicas": _INT,
                        "maxReplicas": _INT,
                        "autoscalerDesired": _INT,
                    },
                },
            },
            "unplaced": _INT,
            "lastBudgetMove": {
                "type": "object",
                "properties": {
                    "source": _STR,
                    "target": _STR,
                    "replicas": _INT,
                    "reason": _STR,
                    "at": _STR,
                },
            },
        },
    }
    columns = [
        _column("Kind", ".spec.kind"),
        _column("Replicas", ".spec.replicas", "integer"),
        _column("Unplaced", ".status.unplaced", "integer"),
    ]
    return _crd("FederatedDeployment", "federateddeployments", ["fdeploy"], spec, status, columns)


def federated_object_crd() -> Manifest:
    """Any namespaced object (``spec.template``), placed on members or following the workloads
    that reference it; the host checks identity and patch shapes, members check the rest."""
    json_patch_op = {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": _STR,
            "from": _STR,
            "value": {"x-kubernetes-preserve-unknown-fields": True},
        },
    }
    override = {
        "type": "object",
        "required": ["clusterName"],
        "properties": {
            "clusterName": _STR,
            "mergePatch": _ANY,
            "jsonPatch": {"type": "array", "items": json_patch_op},
        },
    }
    template = {
        **_ANY,
        "description": "A namespaced object: apiVersion, kind, metadata.name and its content",
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": {
                **_ANY,
                "required": ["name"],
                "properties": {"name": _STR, "namespace": _STR},
            },
        },
    }
    spec = {
        "type": "object",
        "required": ["template"],
        "properties": {
            "template": template,
            "placement": _PLACEMENT,
            "overrides": {"type": "array", "items": override},
            "adopt": {"type": "boolean"},
        },
    }
    states = ["Applied", "Unchanged", "Drifted", "Conflict", "Failed", "Unreachable", "MissingKind"]
    status = {
        "type": "object",
        "properties": {
            "conditions": _CONDITIONS,
            "observedGeneration": _INT,
            "clusters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "state"],
                    "properties": {
                        "name": _STR,
                        "state": {"type": "string", "enum": states},
                        "message": _STR,
                    },
                },
            },
        },
    }
    columns = [
        _column("Kind", ".spec.template.kind"),
        _column("Object", ".spec.template.metadata.name"),
    ]
    return _crd("FederatedObject", "federatedobjects", ["fobj"], spec, status, columns)


def federation_operation_crd() -> Manifest:
    spec = {
        "type": "object",
        "required": ["procedure"],
        "properties": {
            "procedure": _STR,
            "federation": _STR,
            "parameters": _ANY,
            "flowRunID": _STR,
        },
    }
    status = {
        "type": "object",
        "properties": {
            "phase": _STR,
            "startedAt": {"type": "string", "format": "date-time"},
            "finishedAt": {"type": "string", "format": "date-time"},
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": _STR,
                        "phase": _STR,
                        "at": {"type": "string", "format": "date-time"},
                        "message": _STR,
                    },
                },
            },
            "result": _ANY,
        },
    }
    columns = [_column("Procedure", ".spec.procedure"), _column("Phase", ".status.phase")]
    return _crd("FederationOperation", "federationoperations", ["fop"], spec, status, columns)


def dns_endpoint_crd() -> Manifest:
    """ExternalDNS's ``DNSEndpoint``, schema as ExternalDNS publishes it (the fields used)."""
    endpoint = {
        "type": "object",
        "properties": {
            "dnsName": _STR,
            "recordType": _STR,
            "recordTTL": {"type": "integer", "format": "int64"},
            "targets": {"type": "array", "items": _STR},
            "setIdentifier": _STR,
            "labels": _STR_MAP,
            "providerSpecific": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": _STR, "value": _STR}},
            },
        },
    }
    spec = {"type": "object", "properties": {"endpoints": {"type": "array", "items": endpoint}}}
    status = {"type": "object", "properties": {"observedGeneration": {**_INT, "format": "int64"}}}
    crd = _crd("DNSEndpoint", "dnsendpoints", [], spec, status, [], DNS_GROUP, "v1alpha1")
    crd["metadata"]["annotations"] = {
        "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/external-dns/pull/2007"
    }
    return crd


def flows_account(federation: str) -> str:
    """The host service account day-to-day flows act as: the federation's objects and its DNS
    records, nothing else (bootstrap and join keep the admin's credentials)."""
    return f"fleetflow-worker-{federation}"


def token_secret_for(account: str, namespace: str, name: str, labels: dict[str, str]) -> Manifest:
    """A long-lived token Secret for ``namespace``/``account`` (deleting it revokes the
    token): the kube-controller-manager fills it in."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"kubernetes.io/service-account.name": account},
        },
    }


def flows_token_secret(namespace: str, federation: str) -> Manifest:
    """The flows' host account's token."""
    account = flows_account(federation)
    labels = {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation}
    return token_secret_for(account, namespace, f"{account}-token", labels)


_ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]


def worker_rbac(namespace: str, federation: str) -> list[Manifest]:
    """What the flows' account may do in the host: fleetflow's own kinds and DNS records
    wherever they are (a workload lives in its application's namespace), leases and events in
    the federation's namespace, and reads of CRDs and namespaces. No Secrets, no workloads,
    no RBAC."""
    name = flows_account(federation)
    labels = {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation}
    kinds = ["memberclusters", "federateddeployments", "federationoperations", "federatedobjects"]
    cluster_rules = [
        {
            "apiGroups": [GROUP],
            "resources": [*kinds, *(f"{k}/status" for k in kinds)],
            "verbs": _ALL,
        },
        {"apiGroups": [DNS_GROUP], "resources": ["dnsendpoints"], "verbs": _ALL},
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]},
    ]
    rules = [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _ALL},
    ]
    rbac = "rbac.authorization.k8s.io"
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": cluster_rules,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "rules": rules,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": name},
            "subjects": subjects,
        },
    ]


def control_plane_manifests(
    federation: str, namespace: str, *, include_dns_crd: bool
) -> list[Manifest]:
    """Everything bootstrap applies to the host, in apply order (CRDs before their users)."""
    crds = [
        member_cluster_crd(),
        federated_deployment_crd(),
        federated_object_crd(),
        federation_operation_crd(),
    ]
    if include_dns_crd:
        crds.append(dns_endpoint_crd())
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {LABEL_MANAGED: MANAGED_BY}},
    }
    return [ns, *crds, *worker_rbac(namespace, federation)]


def crd_names(manifests: list[Manifest]) -> list[str]:
    return [m["metadata"]["name"] for m in manifests if m["kind"] == "CustomResourceDefinition"]


def host_problem(host: str, version: str) -> str | None:
    """Why a cluster of this version cannot host a federation, or None."""
    if minor(version) >= (1, MIN_HOST_MINOR):
        return None
    return (
        f"host {host!r} runs {version}; fleetflow needs Kubernetes 1.{MIN_HOST_MINOR} or newer: "
        "upgrade it or choose another host"
    )


def minor(version: str) -> tuple[int, int]:
    """``v1.36.3`` or ``v1.36.3-gke.1`` -> (1, 36)."""
    major, minor_, *_ = version.removeprefix("v").split(".")
    return int(major), int("".join(ch for ch in minor_ if ch.isdigit()))
