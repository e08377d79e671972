"""Names shared with KubeRay and Kubernetes, in one place (see KubeRay's raycluster_types.go)."""
from __future__ import annotations

RAY_GROUP = "ray.io"
RAY_VERSION = "v1"
RAYCLUSTER_PLURAL = "rayclusters"
RAYCLUSTER_KIND = "RayCluster"
RAYCLUSTER_CRD = "rayclusters.ray.io"

# Labels KubeRay puts on the pods it creates.
LABEL_CLUSTER = "ray.io/cluster"
LABEL_NODE_TYPE = "ray.io/node-type"
LABEL_GROUP = "ray.io/group"

# Labels we put on everything we create, so that Stop knows what it owns.
FIELD_MANAGER = "dku-ray"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "dku-ray"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"

PORT_GCS = 6379
PORT_DASHBOARD = 8265
PORT_CLIENT = 10001
PORT_METRICS = 8080

HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
AUTH_TOKEN_KEY = "auth_token"  # key of the token in the Secret KubeRay creates for authOptions.mode=token
