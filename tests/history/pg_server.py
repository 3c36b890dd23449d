"""A throw-away PostgreSQL server for the history tests: Debian's ``postgresql`` binaries, ``initdb`` +
``pg_ctl`` in a temp dir, listening on a unix socket only (nothing on the network).

The server refuses to run as root (CI runs as root): then initdb and pg_ctl run as the ``postgres``
user the Debian package creates (``runuser -u postgres``), in a temp dir given to that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class ServerUnavailable(RuntimeError):
    pass


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path:
        return path
    raise ServerUnavailable(f"{name} not found: install Debian's postgresql package (apt-get install postgresql)")


@dataclass
class PgServer:
    root: Path
    socket_dir: Path
    data_dir: Path
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/postgres?host={self.socket_dir}"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        subprocess.run(self.as_user + [pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PgServer:
    """initdb + pg_ctl start; raises :class:`ServerUnavailable` with the reason when it cannot."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="sdeval-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ServerUnavailable("running as root and runuser is missing: PostgreSQL refuses to run as root")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServerUnavailable("running as root and there is no 'postgres' user "
                                    "(Debian's postgresql package creates it)") from exc
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, sock = root / "data", root / "sock"
    if as_user:
        subprocess.run(as_user + ["mkdir", "-p", str(sock)], check=True, timeout=30)
    else:
        sock.mkdir()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    done = subprocess.run(as_user + [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                                     "--no-sync"], capture_output=True, text=True, timeout=180, env=env, cwd=root)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise ServerUnavailable(f"initdb failed: {done.stderr.strip()[-800:]}")
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=50"
    done = subprocess.run(as_user + [pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60",
                                     "start"], capture_output=True, text=True, timeout=120, env=env, cwd=root)
    if done.returncode != 0:
        log = (root / "log").read_text(errors="replace")[-800:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise ServerUnavailable(f"pg_ctl start failed: {done.stderr.strip()[-400:]} {log}")
    return PgServer(root, sock, data, as_user)
