"""`python -m dku_ray_job <job.json>`: the entrypoint of the Ray job.

The credentials file is taken (read and deleted) before anything heavy is imported, so that a
broken image (say, without xgboost) cannot leave it behind on the node.
"""
from __future__ import annotations

import os
import sys

from dku_ray_job.credentials import take_secrets

if __name__ == "__main__":
    _secrets = take_secrets()
    try:
        from dku_ray_job.main import main
    except ImportError as exc:
        from dku_ray_job import events

        events.emit("failed", reason="image", message=(
            f"The Ray image cannot run the training job: {exc}. Use a Ray image that has xgboost, pyarrow and "
            "pandas installed (see the dku_ray docs), or pass pip=['xgboost-cpu==<version>'] to submit()."))
        sys.exit(3)
    code = main(sys.argv[1:], _secrets)
    from dku_ray_job import main as driver

    if driver.HARD_EXIT[0]:  # stopped: leave now, the Ray cluster cleans up the job's actors
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
