"""The code that runs *on* the Ray cluster for `dku_ray.submit()`: a Ray job entrypoint that
trains distributed XGBoost with Ray Train and writes the results to a folder.

Shipped to the cluster in the job's `runtime_env.py_modules`, so it must stay self-contained:
it never imports `dku_ray`, `dataiku` or `dataikuapi`, and it needs only what a Ray image with
xgboost already has (ray[train], xgboost, pyarrow, pandas, numpy; matplotlib is optional).

Run as `python -m dku_ray_job <job.json>` from the job's working_dir.
"""
