"""`make gpu-check`: one prepared end-to-end check on a CUDA machine (a CPU dry run in CI).

In one process, in order: the tests marked `cuda`; digits-jem trained on the device; CIFAR-format
files written here and a WRN-28-10 JEM (K=20, and the JEM++ K=5 preset beside it) trained on them
for a fixed number of iterations; that WRN served by `python -m service` under uvicorn on the
device, measured through HTTP (predict 1 and 64 images, OOD, generation) beside the raw model in
the same run. One JSON and one Markdown file come out. `bench/gpu_check/run.sh` is the one
command for a GPU machine (it installs the carried wheels first, see `prepare.sh`).
"""
