"""TorchServe: archive the handler, write a config, run `torchserve --foreground` until SIGTERM.

`python -m bench.peers.torchserve_run --port P --scratch DIR`; POST /predictions/digits with one
multipart field per image. One worker, batch size 64, max batch delay 5 ms, token auth off
(loopback only), the management and metrics APIs on other free ports.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from bench.peers.common import MAX_BATCH, MAX_WAIT_MS

HANDLER = Path(__file__).with_name("torchserve_handler.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--scratch", type=Path, required=True)
    args = p.parse_args()
    bin_dir = Path(sys.executable).parent
    store = args.scratch / "model-store"
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(bin_dir / "torch-model-archiver"), "--model-name", "digits", "--version", "1.0",
         "--handler", str(HANDLER), "--export-path", str(store), "--force"],
        check=True,
    )  # fmt: skip
    models = {
        "digits": {
            "1.0": {
                "defaultVersion": True,
                "marName": "digits.mar",
                "minWorkers": 1,
                "maxWorkers": 1,
                "batchSize": MAX_BATCH,
                "maxBatchDelay": int(MAX_WAIT_MS),
                "responseTimeout": 120,
            }
        }
    }
    config = args.scratch / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://{args.host}:{args.port}",
                f"management_address=http://{args.host}:{_free_port()}",
                f"metrics_address=http://{args.host}:{_free_port()}",
                "disable_token_authorization=true",
                "install_py_dep_per_model=false",
                "default_workers_per_model=1",
                f"model_store={store}",
                "load_models=digits.mar",
                f"models={json.dumps(models)}",
                "",
            ]
        )
    )
    proc = subprocess.Popen(
        [str(bin_dir / "torchserve"), "--start", "--foreground", "--ncs", "--ts-config",
         str(config), "--model-store", str(store), "--disable-token-auth"],
        env={**os.environ, "LOG_LOCATION": str(args.scratch / "logs"),
             "METRICS_LOCATION": str(args.scratch / "logs")},
    )  # fmt: skip

    def stop(*_: object) -> None:
        proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.exit(proc.wait())


if __name__ == "__main__":
    main()
