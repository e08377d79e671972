"""Start Ray Cluster: create or update a RayCluster on a DSS-managed Kubernetes cluster."""
from dataiku.runnables import Runnable

from dku_ray import cluster_macros


class StartRayCluster(Runnable):
    def __init__(self, project_key, config, plugin_config):
        self.config, self.plugin_config = config, plugin_config

    def get_progress_target(self):
        return cluster_macros.PROGRESS_TARGET

    def run(self, progress_callback):
        return cluster_macros.start(self.config, self.plugin_config, progress_callback)
