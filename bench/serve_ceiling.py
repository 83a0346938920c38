"""Run a ceiling app (``bare`` or ``decode``) exactly as ``trackyard serve`` runs trackyard."""

from __future__ import annotations

import argparse
import sys

from trackyard.http import server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=["bare", "decode"])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sock = server.listen("127.0.0.1", 0)
    print(f"ceiling {args.app} listening on {server.url_of(sock)}", flush=True)
    sys.stdout.flush()
    server.run(f"bench.ceilings:{args.app}", sock, workers=args.workers)


if __name__ == "__main__":
    main()
