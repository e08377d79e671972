"""Ray Dashboard Port-Forward: a safe, self-healing tunnel to the Ray dashboard (see dku_ray.dashboard_macro)."""
from dataiku.runnables import Runnable

from dku_ray.dashboard_macro import progress_target, run_dashboard_macro


class PortForwardRayDashboard(Runnable):
    def __init__(self, project_key, config, plugin_config):
        self.project_key = project_key
        self.config = config
        self.plugin_config = plugin_config

    def get_progress_target(self):
        return progress_target(self.config)

    def run(self, progress_callback):
        return run_dashboard_macro(self.config, progress_callback)
