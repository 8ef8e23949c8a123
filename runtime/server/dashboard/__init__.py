"""What a person reads: the live dashboard the server serves at `GET /` (static files in
`static/`, fed by `GET /v2/dashboard`, see `routes.py`) and the self-contained HTML drift
report (`report.py`, also written by `mlrt drift --format html`)."""
