"""``python -m serving.bentoml_main --metrics-dir DIR serve ...``: BentoML's command line, with this server's own
Prometheus directory.

BentoML keeps the metrics of its worker processes in files under ``$BENTOML_HOME/prometheus_multiproc_dir`` and
empties that folder whenever a server starts. Two servers on one host (two ports, two model folders, a test
session's servers) shared it, so starting the second wiped the first one's ``/metrics`` (its histograms vanished
mid-run). ``tagsmith serve`` gives each server a folder of its own and removes it when the server has stopped.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "--metrics-dir":
        raise SystemExit("usage: python -m serving.bentoml_main --metrics-dir DIR BENTOML-ARGUMENTS...")
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    BentoMLContainer.prometheus_multiproc_dir.set(argv[1])  # read by the arbiter, passed on to every worker
    cli(argv[2:], prog_name="bentoml")


if __name__ == "__main__":
    main(sys.argv[1:])
