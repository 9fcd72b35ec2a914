"""Consistency checks of deploy/ (and the Dockerfile) against the real CLI.

Every function returns a list of problems, one line each, naming the file, the object and the
unknown flag / variable / port, so that a failing test says exactly what to fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
CAIRN_IMAGE = re.compile(r"^cairn(:|$)")
_FLAG = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")


def cairn_executable() -> str:
    """The installed ``cairn`` console script (the project's entry point), next to Python."""
    script = Path(sys.executable).parent / "cairn"
    return str(script) if script.exists() else "cairn"


def _help(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, f"{argv} failed: {done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Cli:
    """What the real CLIs accept: ``cairn`` subcommands, ``cairn server`` and ``python -m sdk``."""

    subcommands: frozenset[str]
    server_flags: frozenset[str]
    server_help: str
    sdk_flags: frozenset[str]

    @classmethod
    def load(cls) -> Cli:
        cairn = cairn_executable()
        top = _help([cairn, "--help"])
        match = re.search(r"\{([a-z,-]+)\}", top)
        assert match, f"no subcommand list in `cairn --help`:\n{top}"
        server = _help([cairn, "server", "--help"])
        sdk = _help([sys.executable, "-m", "sdk", "--help"])
        return cls(
            frozenset(match.group(1).split(",")),
            frozenset(_FLAG.findall(server)),
            server,
            frozenset(_FLAG.findall(sdk)),
        )

    def env_known(self, name: str) -> bool:
        """``CAIRN_FOO_BAR`` is the variable of ``--foo-bar`` (or named in the help itself)."""
        flag = "--" + name.removeprefix("CAIRN_").lower().replace("_", "-")
        return flag in self.server_flags or name in self.server_help


@dataclass
class Container:
    """A container running the Cairn image, with its effective argv and environment."""

    where: str  # "deploy/compose.yaml service cairn-1"
    argv: list[str]
    env: dict[str, str]
    ports: list[int] = field(default_factory=list)  # container ports it publishes / declares

    def flag(self, name: str) -> str | None:
        """The value of ``--name`` (``--name V`` or ``--name=V``), else None."""
        for i, arg in enumerate(self.argv):
            if arg == name and i + 1 < len(self.argv):
                return self.argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None

    def setting(self, flag: str, defaults: dict[str, str]) -> str | None:
        """A server setting: the flag, else its CAIRN_ variable, else the image's ENV."""
        env = "CAIRN_" + flag.removeprefix("--").upper().replace("-", "_")
        return self.flag(flag) or self.env.get(env) or defaults.get(env)


@dataclass(frozen=True)
class Dockerfile:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    exposed: frozenset[int]
    copied: frozenset[str]
    base: str

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        lines = re.sub(r"\\\n", " ", text).splitlines()
        entrypoint: list[str] = []
        cmd: list[str] = []
        env: dict[str, str] = {}
        exposed: set[int] = set()
        copied: set[str] = set()
        base = ""
        for line in (raw.strip() for raw in lines):
            word, _, rest = line.partition(" ")
            match word.upper():
                case "FROM":
                    base = rest.strip()
                case "ENTRYPOINT":
                    entrypoint = json.loads(rest)  # exec form only: signals reach cairn
                case "CMD":
                    cmd = json.loads(rest)
                case "ENV":
                    env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
                case "EXPOSE":
                    exposed.update(int(p.split("/")[0]) for p in rest.split())
                case "COPY":
                    copied.update(p.strip("./") for p in rest.split()[:-1])
        return cls(entrypoint, cmd, env, frozenset(exposed), frozenset(copied), base)


def port_of(bind: str | None) -> int | None:
    if bind is None:
        return None
    host, _, port = bind.rpartition(":")
    return int(port) if host and port.isdigit() else None


def hostports(text: str) -> Iterator[tuple[str, int]]:
    """``host:port`` pairs of a comma-separated list or URL."""
    for part in text.split(","):
        part = part.strip()
        if "://" in part:
            url = urlsplit(part)
            if url.hostname and url.port:
                yield url.hostname, url.port
        elif ":" in part:
            host, _, port = part.rpartition(":")
            yield host, int(port)


def check_argv(c: Container, cli: Cli) -> list[str]:
    """The command is real: a cairn subcommand with known flags, or ``python -m sdk APP``."""
    problems = []
    if c.argv[:1] == ["cairn"]:
        if len(c.argv) < 2 or c.argv[1] not in cli.subcommands:
            sub = c.argv[1] if len(c.argv) > 1 else "(none)"
            problems.append(f"{c.where}: `cairn {sub}` is not a cairn subcommand")
        elif c.argv[1] == "server":
            for flag in _FLAG.findall(" ".join(c.argv[2:])):
                if flag not in cli.server_flags:
                    problems.append(f"{c.where}: unknown flag {flag} (not in cairn server --help)")
            for name in sorted(c.env):
                if name.startswith("CAIRN_") and not cli.env_known(name):
                    problems.append(
                        f"{c.where}: unknown variable {name} (no matching flag in "
                        "cairn server --help)"
                    )
    elif c.argv[:3] == ["python", "-m", "sdk"]:
        if importlib.util.find_spec("sdk") is None:
            problems.append(f"{c.where}: `python -m sdk`: module sdk not importable")
        app = c.argv[3] if len(c.argv) > 3 else ""
        module, _, attribute = app.partition(":")
        try:
            if not hasattr(importlib.import_module(module), attribute or "app"):
                problems.append(f"{c.where}: {app} has no attribute {attribute!r}")
        except ImportError as exc:
            problems.append(f"{c.where}: app {app!r} not importable: {exc}")
        for flag in _FLAG.findall(" ".join(c.argv[4:])):
            if flag not in cli.sdk_flags:
                problems.append(f"{c.where}: unknown flag {flag} (not in python -m sdk --help)")
        unknown = sorted(n for n in c.env if n.startswith("CAIRN_"))
        if unknown:
            problems.append(f"{c.where}: the SDK endpoint takes no CAIRN_ variables: {unknown}")
    else:
        problems.append(f"{c.where}: {c.argv} is neither `cairn ...` nor `python -m sdk ...`")
    return problems


def effective_argv(image_entry: list[str], image_cmd: list[str], entry: Any, cmd: Any) -> list[str]:
    """Docker's rule: an entrypoint override also drops the image's CMD."""
    if entry is not None:
        return _as_list(entry) + (_as_list(cmd) if cmd is not None else [])
    return image_entry + (_as_list(cmd) if cmd is not None else image_cmd)


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else str(value).split()


def load_yaml(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def flatten(items: Iterable[list[str]]) -> list[str]:
    return [p for group in items for p in group]
