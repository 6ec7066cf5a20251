"""The class board as a service of the hub: ``python3 -m labkit.board_service`` is started by
JupyterHub (labkit class serve), which gives it its URL, prefix and token.

Only the hub's admins may open it (the hub's own OAuth and its access:services scope);
a request carrying the board's key (``?key=``, printed by labkit class serve) is let in
too, for a classroom screen. Routes, under the service's prefix: the page, ``board.csv``,
``data.json``, ``evidence?learner=&check=``.
"""

from __future__ import annotations

import argparse
import hmac
import os
import threading
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import ioloop, web

from labkit import checks, classroom
from labkit.board import Board


class _Handler(HubOAuthenticated, web.RequestHandler):
    board: Board
    key: str

    def initialize(self, board: Board, key: str) -> None:
        self.board, self.key = board, key

    def get_current_user(self):
        given = self.get_argument("key", "")
        if self.key and given and hmac.compare_digest(given, self.key):
            return {"name": "class-screen"}
        return super().get_current_user()

    def query(self) -> str:
        given = self.get_argument("key", "")
        return f"?key={given}" if given else ""


class Page(_Handler):
    @web.authenticated
    def get(self) -> None:
        self.write(self.board.html(self.query()))


class Csv(_Handler):
    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", "attachment; filename=class-board.csv")
        self.write(self.board.to_csv())


class Data(_Handler):
    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(self.board.to_json())


class Evidence(_Handler):
    @web.authenticated
    def get(self) -> None:
        try:
            self.write(self.board.evidence(self.get_argument("learner"),
                                           self.get_argument("check")))
        except KeyError as exc:
            raise web.HTTPError(404, f"no result for {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="", help="comma-separated sections; default all")
    ap.add_argument("--interval", type=float, default=60)
    ap.add_argument("--stuck-after", type=float, default=600)
    args = ap.parse_args(argv)
    roster = classroom.load()
    sections = [s for s in args.sections.split(",") if s]
    board = Board(roster.names, checks.select(sections=sections), args.interval,
                  args.stuck_after, engine=roster.engine)
    stop = threading.Event()
    threading.Thread(target=board.run_forever, args=(stop,), daemon=True).start()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    kw = {"board": board, "key": os.environ.get("LABKIT_BOARD_KEY", "")}
    app = web.Application([
        (prefix, Page, kw), (prefix + "board.csv", Csv, kw), (prefix + "data.json", Data, kw),
        (prefix + "evidence", Evidence, kw), (prefix + "oauth_callback", HubOAuthCallbackHandler),
    ], cookie_secret=os.urandom(32))
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8003"))
    app.listen(url.port or 80, url.hostname or "127.0.0.1")
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
