"""Inspect Ray Cluster: a read-only report of status, pods and endpoints."""
from dataiku.runnables import Runnable

from dku_ray import cluster_macros


class InspectRayCluster(Runnable):
    def __init__(self, project_key, config, plugin_config):
        self.config, self.plugin_config = config, plugin_config

    def get_progress_target(self):
        return None

    def run(self, progress_callback):
        return cluster_macros.inspect(self.config, self.plugin_config)
