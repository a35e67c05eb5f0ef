"""What the Prefect UI shows on a block type's page: where its documentation lives and how to
use it from code."""

from __future__ import annotations

DOCS_URL = "https://fleetflow.io/docs/blocks"

KUBE_CLUSTER_EXAMPLE = """Load a cluster's credentials and talk to it (its secrets stay masked):

```python
from fleetflow.blocks import KubeCluster

kube_cluster = KubeCluster.load("BLOCK_NAME")
with kube_cluster.api_client() as api:
    ...
```
"""

FEDERATION_EXAMPLE = """Load a federation and list its clusters' credentials blocks:

```python
from fleetflow.blocks import Federation

federation = Federation.load("BLOCK_NAME")
print(federation.host_cluster, federation.member_clusters)
```
"""
