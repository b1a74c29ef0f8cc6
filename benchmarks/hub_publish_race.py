"""Concurrent publishes of one name@version on a moto S3 server and on a local folder (issue #12).

    python benchmarks/hub_publish_race.py --rounds 20 --writers 4 --label now --out benchmarks/results/hub/now.json

Each round releases ``--writers`` threads at once, each publishing a different PCA artifact as
``pca 1.0`` to a fresh hub, then pulls the version. It counts rounds where the number of callers
told "published" is not exactly one, and rounds that left a version ``pull`` refuses. Run it with
``PYTHONPATH`` pointing at an older checkout (``git archive 87e9c61 virtualcell | tar -x -C /tmp/old``)
and ``--label before`` to measure the code before the fix; it uses only ``publish`` and ``pull``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import sys
import tempfile
import threading
import time


def _start_s3() -> object:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--label", default="now")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    server = _start_s3()
    import s3fs
    import torch

    import virtualcell
    from virtualcell.registry.publish import publish, pull
    from virtualcell.representations.pca import PCAEncoder
    from virtualcell.testing import tiny_expression

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    x, genes = tiny_expression(n_cells=60, n_genes=20)
    folders = [PCAEncoder(n_components=4).fit(x * (i + 1), genes).save(f"{tmp}/a{i}") for i in range(args.writers)]
    s3fs.S3FileSystem().mkdir("race")
    results = {}
    for where in ("s3", "folder"):
        not_one = refused = 0
        started = time.perf_counter()
        for r in range(args.rounds):
            hub = f"s3://race/{where}{r}" if where == "s3" else f"{tmp}/hub{r}"
            barrier, winners = threading.Barrier(args.writers), []

            def run(i: int) -> None:
                barrier.wait()
                try:
                    publish(folders[i], hub, "pca", "1.0")
                    winners.append(i)
                except FileExistsError:
                    pass

            threads = [threading.Thread(target=run, args=(i,)) for i in range(args.writers)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            not_one += len(winners) != 1
            try:
                pull(hub, "pca", "1.0", cache_dir=f"{tmp}/cache-{where}-{r}")
            except Exception:  # noqa: BLE001 - counted: a version pull refuses
                refused += 1
        results[where] = {"rounds": args.rounds, "rounds_not_exactly_one_winner": not_one,
                          "rounds_version_pull_refuses": refused, "seconds": round(time.perf_counter() - started, 2)}
        print(f"{args.label} {where}: {not_one}/{args.rounds} rounds without exactly one winner; "
              f"{refused}/{args.rounds} left a version pull refuses")
    server.stop()
    record = {"label": args.label, "writers": args.writers, "results": results,
              "virtualcell_source": os.path.dirname(virtualcell.__file__),
              "command": (f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else "")
              + "python " + " ".join(sys.argv), "machine": platform.platform(),
              "python": platform.python_version()}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(record, handle, indent=2)


if __name__ == "__main__":
    main()
