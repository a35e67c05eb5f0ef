"""Every error fleetflow raises, in one tree. Each says what is wrong and how to fix it, in one
line meant for the person running fleetflow; ``retryable`` says whether trying the same step
again can help, and is the only thing a task's retry condition reads.

```
FleetflowError                      retryable?
├── InvalidRequest                  no   the request cannot be carried out as given
│   ├── PlacementError                   a placement no plan can satisfy
│   ├── UnknownName                      a block, member, region or workload that does not exist
│   ├── MembershipError                  a cluster that cannot join or leave as asked
│   ├── HostTooOld                       a host cluster older than fleetflow supports
│   ├── CredentialsError                 credentials that cannot make a client
│   └── MigrationRefused                 no member can take the workload (each one's reason)
├── ClusterError                    (per class) a request to one cluster failed
│   ├── ClusterUnreachable          yes  connection refused, reset, DNS
│   ├── ClusterTimeout              yes  no answer in time (or HTTP 504)
│   ├── ClusterThrottled            yes  HTTP 429: throttled, or storage still starting
│   ├── ClusterServerError          yes  HTTP 5xx
│   ├── ResourceConflict            yes  HTTP 409: changed meanwhile
│   ├── ClusterTLSError             no   the CA does not match
│   ├── ClusterUnauthorized         no   HTTP 401
│   ├── ClusterForbidden            no   HTTP 403
│   ├── ResourceNotFound            no   HTTP 404
│   └── InvalidResource             no   HTTP 422
├── WaitTimeout                     no   a condition did not hold by its deadline
├── PartialFailure                  no   some items of a run failed; the rest was done
├── LeaseLost                       no   a run's lease may have lapsed (or was taken): it stops
├── RecordChanged                   no   an operation record changed under the run writing it
├── PlanOutdated                    no   a fence, taint or hold changed under a rebalance's plan
├── MigrationHalted                 no   a migration stopped short of its cutover (rolled back)
│   ├── VerificationFailed               the copy's checksums differ from the source's
│   ├── TransferFailed                   the data mover (rsync) failed
│   ├── SourceServing                    the source serves again after its quiesce
│   └── OverBudget                       the final sync would exceed the downtime budget
├── PrefectOverloaded               yes  the Prefect API still answered 503 or 429 after retries
├── FailpointHit                    no   a crash point armed by FLEETFLOW_FAILPOINTS stopped the run
└── LocalError                      no   this machine: the local stack, test bed, build
    ├── StackError
    ├── TestbedError
    └── BuildError
```
"""

from __future__ import annotations


class FleetflowError(Exception):
    """An error meant for the person running fleetflow: one clear line, no traceback needed."""

    retryable: bool = False


class InvalidRequest(FleetflowError, ValueError):
    """The request cannot be carried out as given: fix it, not the clusters."""


class PlacementError(InvalidRequest):
    """The inputs can never give a valid plan: fix the request, not the clusters."""


class UnknownName(InvalidRequest, LookupError):
    """A name given in a request (block, member, region, workload) does not exist."""


class MembershipError(InvalidRequest):
    """The cluster cannot join (or leave) as asked; the message says why and what to do."""


class PatchError(InvalidRequest):
    """A JSON patch operation does not apply to its document; says which and why."""


class HostTooOld(InvalidRequest):
    """The host cluster's Kubernetes is older than fleetflow supports."""


class CredentialsError(InvalidRequest):
    """Credentials that cannot be turned into a client (bad kubeconfig, missing context...)."""


class MigrationRefused(InvalidRequest):
    """No member can take the workload (or not the one named): says why each was excluded."""


class ClusterError(FleetflowError):
    """A request to one cluster failed; names the cluster, the detail and the fix."""

    hint = "check the cluster and retry"

    def __init__(self, cluster: str, detail: str, *, status: int | None = None) -> None:
        self.cluster = cluster
        self.detail = detail
        self.status = status
        super().__init__(f"cluster {cluster!r}: {detail}; {self.hint}")

    def __reduce__(self) -> tuple[object, ...]:
        # Prefect moves task exceptions between threads and processes by pickling them.
        return (_rebuild, (type(self), self.cluster, self.detail, self.status))


def _rebuild(
    cls: type[ClusterError], cluster: str, detail: str, status: int | None
) -> ClusterError:
    return cls(cluster, detail, status=status)


class ClusterUnreachable(ClusterError):
    hint = "check that its API server is running and its address is right"
    retryable = True


class ClusterTimeout(ClusterError):
    hint = "the API server is overloaded or unreachable; retry, or raise request_timeout"
    retryable = True


class ClusterThrottled(ClusterError):
    hint = "the API server asks to slow down (or its storage is still starting); retried"
    retryable = True


class ClusterServerError(ClusterError):
    hint = "the API server failed; retried, and if it persists read its log"
    retryable = True


class ResourceConflict(ClusterError):
    hint = "the object changed meanwhile or another field manager owns the field; re-read and retry"
    retryable = True


class ClusterTLSError(ClusterError):
    hint = "check the CA data in its credentials block (it must be the CA that signed the server)"


class ClusterUnauthorized(ClusterError):
    hint = "its token or client certificate is wrong or expired: rotate the credentials block"


class ClusterForbidden(ClusterError):
    hint = "the credentials lack the RBAC permission for this request"


class ResourceNotFound(ClusterError):
    hint = "check the name and namespace"


class InvalidResource(ClusterError):
    hint = "fix the manifest"


class WaitTimeout(FleetflowError, TimeoutError):
    """A wait ran past its deadline; the message carries what was last seen, and ``last``
    the value itself."""

    last: object = None


class PartialFailure(FleetflowError):
    """Part of a run failed (some workloads or members); what could be done was done."""


class LeaseLost(FleetflowError):
    """The run could not renew its lease in time (or another run holds it now): another run
    may act, so this one stops before its next write; a rerun resumes from the record."""


class RecordChanged(FleetflowError):
    """An operation record changed since the run read it (another run wrote it): the write is
    refused (compare-and-set on its resourceVersion) and the run stops."""


class PlanOutdated(FleetflowError):
    """A member was fenced or unfenced, its taints changed, or a migration took or released a
    workload while a rebalance ran: it stops before its next write; the next run plans anew."""


class MigrationHalted(FleetflowError):
    """A migration stopped before its cutover: the source serves and keeps all its data; the
    message says why and what a rerun does."""


class VerificationFailed(MigrationHalted):
    """The target's files do not match the source's sha256 manifest."""


class TransferFailed(MigrationHalted):
    """The data mover failed (rsync's exit status and its last line of error)."""


class SourceServing(MigrationHalted):
    """The source runs replicas again after it was quiesced (a rollback that did not finish,
    an operator scaling it back up): the copy may miss its new writes, so the migration goes
    back to the quiesce."""


class OverBudget(MigrationHalted):
    """The final sync, predicted from what changed since the last round, would keep the
    workload stopped for longer than its downtime budget."""


class PrefectOverloaded(FleetflowError):
    """The Prefect server still refused (503, or 429) after the client's retries."""

    retryable = True

    def __init__(self, status: int, method: str, path: str) -> None:
        self.status, self.method, self.path = status, method, path
        super().__init__(
            f"the Prefect server is overloaded: it answered HTTP {status} to {method} {path} "
            "after retries. On its embedded SQLite this means too many writers at once: run the "
            "stack on PostgreSQL (`fleetflow up --database postgresql://USER:PASSWORD@HOST:PORT/"
            "DATABASE`), or start fewer runs at once"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.status, self.method, self.path))


OVERLOADED_STATUSES = (429, 503)


class FailpointHit(FleetflowError):
    """A point armed with ``raise`` in ``FLEETFLOW_FAILPOINTS`` stopped the step on purpose
    (crash tests: the run fails there, as one whose cluster call failed would)."""


def prefect_overloaded(exc: BaseException) -> PrefectOverloaded | None:
    """``exc`` as a :class:`PrefectOverloaded` when it is an HTTP error of a busy server (as
    Prefect's client raises once its own retries are spent), else None."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status not in OVERLOADED_STATUSES:
        return None
    try:
        request = response.request  # type: ignore[union-attr]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError for a missing request
        return None
    return PrefectOverloaded(int(status), str(request.method), str(request.url.path))


class LocalError(FleetflowError):
    """This machine cannot do what was asked: the local stack, the test bed or its build."""


class StackError(LocalError):
    """The local stack could not start; the message says what to look at."""


class TestbedError(LocalError):
    """The test bed cannot do what was asked; the message says why and what to do."""


class BuildError(LocalError):
    """A binary could not be built; the message carries the Go tool's own error."""


ERRORS_BY_STATUS: dict[int, type[ClusterError]] = {
    401: ClusterUnauthorized,
    403: ClusterForbidden,
    404: ResourceNotFound,
    409: ResourceConflict,
    422: InvalidResource,
    429: ClusterThrottled,
    504: ClusterTimeout,
}


def for_status(status: int) -> type[ClusterError]:
    """The error class of an HTTP status from a cluster's API server."""
    if status in ERRORS_BY_STATUS:
        return ERRORS_BY_STATUS[status]
    return ClusterServerError if status >= 500 else ClusterError
