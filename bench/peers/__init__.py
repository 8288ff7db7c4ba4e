"""`python -m bench --peers`: this service side by side with the servers people would pick instead.

`harness` starts the peers (TorchServe, BentoML, LitServe, Ray Serve) from their own venv and
checks their answers; `run` measures every row interleaved and writes the table. The peers'
servers (`*_server.py`, `bentoml_service.py`, `rayserve_app.py`, `torchserve_*.py`) run in the
peers' venv and share `common.py`.
"""
