"""What a member's own apiserver refuses of fleetflow's account, whatever its RBAC allows. Pure.

RBAC says which verbs on which kinds; it cannot say "Deployments, but not in ``kube-system``",
"Secrets, but not a token for another service account", "pods, but not privileged ones". A
stolen member token with the rules join grants would otherwise reach past the federation's
namespaces: a Deployment in ``kube-system`` running as a controller's account, a hostPath or
privileged pod, a namespace labelled ``enforce=privileged``, a minted token. Join installs, with
admin rights, a ValidatingAdmissionPolicy (CEL, GA since Kubernetes 1.30) that matches that one
service account and refuses:

- any write in a namespace that is not one of the federation's **rooms** (labelled
  ``fleetflow.io/room: <federation>``, by join for the namespaces it is given, or by fleetflow
  when it creates one) or its own namespace; a namespace it creates must be a room with the
  federation's Pod Security level (never lower), and it cannot update or delete namespaces;
- a Secret of type ``kubernetes.io/service-account-token`` anywhere but its own namespace, for
  anyone but itself (rotation mints its own successor there);
- a pod, or a workload's pod template, with a hostPath volume, a privileged container, or the
  host's network, PID or IPC namespace;
- a Service with external IPs (which would take over traffic to those addresses cluster-wide).

OCM checks each ManifestWork against its executor with a SubjectAccessReview; KubeFed and
Karmada's push mode grant every verb on every resource. Rooms are labels rather than
RoleBindings so that fleetflow can open a new room for a new workload namespace itself, which it
may do only as a new, labelled namespace: an existing one becomes a room only by join.
"""

from __future__ import annotations

from enum import StrEnum

from fleetflow.controlplane import LABEL_FEDERATION, LABEL_MANAGED, MANAGED_BY, Manifest

LABEL_ROOM = "fleetflow.io/room"
"""On a member namespace: the federation whose account may write there."""

ANNOTATION_POD_SECURITY = "fleetflow.io/pod-security"
"""On the federation's own namespace in a member: the Pod Security level of the rooms it
opens (read by the account when it creates one)."""

POD_SECURITY = "pod-security.kubernetes.io/"

_API = "admissionregistration.k8s.io/v1"


class PodSecurity(StrEnum):
    """Kubernetes' Pod Security Standards levels, most open first."""

    PRIVILEGED = "privileged"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


def room_labels(federation: str, level: PodSecurity) -> dict[str, str]:
    """The labels of a namespace fleetflow opens as a room: the room, and Pod Security at the
    federation's level, enforced and warned about (so a refused pod says why)."""
    return {
        LABEL_ROOM: federation,
        f"{POD_SECURITY}enforce": level.value,
        f"{POD_SECURITY}warn": level.value,
    }


def labels_of(federation: str) -> dict[str, str]:
    return {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation}


def policy_name(federation: str) -> str:
    return f"fleetflow-{federation}-member-guard"


def _pod_checks() -> list[dict[str, str]]:
    """On ``variables.pod``: the pod spec of a pod, a workload's template, or a CronJob's job
    template (null for anything else, a Scale say)."""
    pod = "variables.pod"
    host = " && ".join(
        f"!(has({pod}.{f}) && {pod}.{f})" for f in ("hostNetwork", "hostPID", "hostIPC")
    )
    privileged = " && ".join(
        f"(!has({pod}.{kind}) || {pod}.{kind}.all(c, !has(c.securityContext) || "
        "!has(c.securityContext.privileged) || !c.securityContext.privileged))"
        for kind in ("containers", "initContainers", "ephemeralContainers")
    )
    return [
        {
            "expression": f"{pod} == null || ({host})",
            "message": "fleetflow's account may not run pods in the host's network, PID or IPC "
            "namespace",
        },
        {
            "expression": f"{pod} == null || !has({pod}.volumes) || "
            f"{pod}.volumes.all(v, !has(v.hostPath))",
            "message": "fleetflow's account may not mount a hostPath volume",
        },
        {
            "expression": f"{pod} == null || ({privileged})",
            "message": "fleetflow's account may not run a privileged container",
        },
    ]


def guard_manifests(
    federation: str, namespace: str, service_account: str, level: PodSecurity
) -> list[Manifest]:
    """The policy and its binding, for the account ``namespace``/``service_account``."""
    name = policy_name(federation)
    user = f"system:serviceaccount:{namespace}:{service_account}"
    room = (
        f"namespaceObject != null && has(namespaceObject.metadata.labels) && "
        f"'{LABEL_ROOM}' in namespaceObject.metadata.labels && "
        f"namespaceObject.metadata.labels['{LABEL_ROOM}'] == '{federation}'"
    )
    labels = "object.metadata.labels"
    new_room = (
        f"has({labels}) && '{LABEL_ROOM}' in {labels} && {labels}['{LABEL_ROOM}'] == "
        f"'{federation}' && '{POD_SECURITY}enforce' in {labels} && "
        f"{labels}.all(k, !k.startsWith('{POD_SECURITY}') || k.endsWith('-version') || "
        f"{labels}[k] == '{level.value}')"
    )
    token = "'kubernetes.io/service-account-token'"
    owner = "'kubernetes.io/service-account.name'"
    own_token = (
        f"request.namespace == '{namespace}' && has(object.metadata.annotations) && "
        f"{owner} in object.metadata.annotations && "
        f"object.metadata.annotations[{owner}] == '{service_account}'"
    )
    pod = (
        "object == null ? null : "
        "request.resource.resource == 'pods' ? object.spec : "
        "has(object.spec) && has(object.spec.template) && has(object.spec.template.spec) ? "
        "object.spec.template.spec : "
        "has(object.spec) && has(object.spec.jobTemplate) ? "
        "object.spec.jobTemplate.spec.template.spec : null"
    )
    policy: Manifest = {
        "apiVersion": _API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels_of(federation)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["*"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": ["*/*"],  # every resource and subresource (scale)
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "fleetflow-account",
                    "expression": f"request.userInfo.username == '{user}'",
                }
            ],
            "variables": [{"name": "pod", "expression": pod}],
            "validations": [
                {
                    "expression": (
                        f"request.resource.resource == 'namespaces' || request.namespace == '' "
                        f"|| request.namespace == '{namespace}' || ({room})"
                    ),
                    "messageExpression": (
                        f"'namespace ' + request.namespace + ' is not a room of federation "
                        f"{federation}: only join (with admin rights) opens an existing "
                        "namespace to fleetflow'"
                    ),
                },
                {
                    "expression": (
                        f"request.resource.resource != 'namespaces' || "
                        f"(request.operation == 'CREATE' && {new_room})"
                    ),
                    "message": f"fleetflow's account may only create namespaces labelled "
                    f"{LABEL_ROOM}={federation} with Pod Security {level.value}",
                },
                {
                    "expression": (
                        f"request.resource.resource != 'secrets' || object == null || "
                        f"!has(object.type) || object.type != {token} || ({own_token})"
                    ),
                    "message": "fleetflow's account may not create a service account token "
                    "Secret but its own",
                },
                {
                    # CVE-2020-8554: a Service's external IPs take over traffic to those
                    # addresses from every pod of the cluster.
                    "expression": (
                        "request.resource.resource != 'services' || object == null || "
                        "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0"
                    ),
                    "message": "fleetflow's account may not give a Service external IPs",
                },
                *_pod_checks(),
            ],
        },
    }
    binding: Manifest = {
        "apiVersion": _API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels_of(federation)},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]
