"""One rank of `vaekit.run.workers.train_in_workers`: `python -m vaekit.cli.worker SPEC.json` trains the
configuration in SPEC with `train_run`'s arguments; a refusal is one line and its exit code, as the CLI's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import distributed
from ..errors import VaekitError


def main(argv: list[str]) -> int:
    from ..run import train_run
    from ..run.configuration import config_from_tree

    spec = json.loads(Path(argv[0]).read_text())
    tree = spec.pop("config")
    try:
        train_run(config_from_tree(tree["model_name"], tree), spec.pop("out"), **spec)
        return 0
    except VaekitError as e:
        sys.stderr.write(f"vaekit: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
