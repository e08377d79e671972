"""`python -m dku_ray ...`: see dku_ray.cli."""
import sys

from .cli import main

sys.exit(main())
