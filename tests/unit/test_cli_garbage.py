"""Every zonectl sub-command, with garbage in each of its file and number options: exit 2, one line, no traceback.

The sub-commands and their options are found by walking the real argparse tree (plugins included), so a
command or option added later is covered without a change here. Each run gives every file option a valid
file except one, which gets garbage (a missing file, a directory, a FIFO, binary, UTF-16 or invalid UTF-8
text, YAML nested a thousand deep, an alias bomb, a file over the size limit, a list where a mapping
belongs), or gives one number option a value that is not a number of seconds (NaN, infinity, 0, -1,
text). The command must refuse it before doing anything: exit status 2, nothing on stdout, one line on
stderr naming the option or the file, no traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from zonectl import cli
from zonectl.core import published
from zonectl.core.config import parse_config
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry
from zonectl.inputs import LIMITS, load_documents, of_kind, read_mapping

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
# file options by destination: their valid value (None: not given unless it is the one with garbage)
FILES: dict[str, Callable[[Path], str | None]] = {
    "config": lambda d: str(EX / "config.yaml"),
    "zones": lambda d: str(EX / "zones.yaml"),
    "files": lambda d: str(EX / "policies.yaml"),
    "policies": lambda d: str(EX / "policies.yaml"),
    "nodes": lambda d: str(EX / "nodes.yaml"),
    "inputs": lambda d: str(d / "gateway.json"),
    "kubeconfig": lambda d: None,
    "ssl_key": lambda d: None,
    "ssl_cert": lambda d: None,
    "ssl_ca": lambda d: None,
}
NUMBERS = ("timeout", "interval", "poll")
BAD_NUMBERS = ("nan", "inf", "-inf", "0", "-1", "1e999", "abc", "", "10s")


def _garbage(d: Path) -> dict[str, Path]:
    """Every kind of bad file, made once per test directory."""
    g = {
        "missing": d / "missing.yaml",
        "directory": d / "a-directory",
        "fifo": d / "a-fifo.yaml",
        "binary": d / "binary.yaml",
        "utf16": d / "utf16.yaml",
        "latin1": d / "latin1.yaml",
        "deep": d / "deep.yaml",
        "aliases": d / "aliases.yaml",
        "huge": d / "huge.yaml",
        "list": d / "list.yaml",
        "json-deep": d / "deep.json",
    }
    g["directory"].mkdir()
    (g["directory"] / "x.yaml").mkdir()  # a directory's *.yaml that is itself a directory
    os.mkfifo(g["fifo"])
    g["binary"].write_bytes(bytes(range(256)) * 4)
    g["utf16"].write_bytes("apiVersion: zonectl.io/v1alpha1\nkind: SecurityZone\n".encode("utf-16"))
    g["latin1"].write_bytes("kind: SecurityZone # Zone für Büro\n".encode("latin-1"))
    g["deep"].write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    laughs, prev = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n', "a"
    for name in "bcdefghi":
        laughs += f"{name}: &{name} [" + ",".join(["*" + prev] * 9) + "]\n"
        prev = name
    g["aliases"].write_text(laughs)
    with open(g["huge"], "wb") as fh:  # sparse: larger than every limit, costs no disk
        fh.truncate(max(LIMITS.values()) + 1)
    g["list"].write_text("- apiVersion: zonectl.io/v1alpha1\n- kind: SecurityZone\n")
    g["json-deep"].write_text("[" * 100_000 + "]" * 100_000)
    return g


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _walk(sub, path + (name,))


def commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf sub-command of the real parser, each plugin built as when it is named."""
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for first in [None, *cli.PLUGINS]:
        for path, parser in _walk(cli.build_parser([first] if first else []), ()):
            if first is None and path[0] in cli.PLUGINS or first is not None and path[0] != first:
                continue  # the stand-ins of plugins not named
            found[path] = parser
    return sorted(found.items())


COMMANDS = commands()


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)}


def _base(path: tuple[str, ...], parser: argparse.ArgumentParser, d: Path, skip: str) -> list[str]:
    """A command line with a valid value for each file option (but ``skip``) and whatever it needs to stop
    short of acting on the world if the garbage were accepted (an NB socket that does not exist, ...)."""
    opts = _options(parser)
    argv = list(path)
    for dest, action in opts.items():
        if dest == skip:
            continue
        value = FILES[dest](d) if _is_file(action) else None
        if dest == "inputs" or dest in ("zones", "policies", "files") and skip == "inputs":
            value = None  # --inputs and --zones/-f exclude each other: the one with garbage is given alone
        if value is not None:
            argv += [action.option_strings[-1], value]
    extra = {"nb": "unix:" + str(d / "no-nb.sock"), "state_dir": str(d / "state"), "target": "ir",
             "format": "json", "skip": "ovn,gateway,crds", "uplink": "zt9nosuch0"}
    for dest, value in extra.items():
        if dest in opts and dest != skip:
            argv += [opts[dest].option_strings[-1], value]
    if any(a.dest == "address" for a in parser._actions):  # explain's positional
        argv.insert(len(path), "fd00:10:244:2:2000::5")
    return argv


def _is_file(action: argparse.Action) -> bool:
    return action.dest in FILES and action.type is None


def _cases() -> list[tuple[str, list[str] | None, str, str]]:
    """(id, command path, option dest, garbage kind) for every command x option x garbage."""
    out = []
    for path, parser in COMMANDS:
        for dest, action in _options(parser).items():
            if _is_file(action):
                kinds = ["missing", "directory", "fifo", "binary", "utf16", "latin1", "huge"]
                if dest not in ("kubeconfig", "ssl_key", "ssl_cert", "ssl_ca"):  # read by zonectl itself
                    kinds += ["deep", "aliases", "list", "json-deep"]
                out += [(f"{' '.join(path)} {dest}={k}", list(path), dest, k) for k in kinds]
            elif dest in NUMBERS or action.type is not None and dest == "nodes":
                out += [(f"{' '.join(path)} {dest}={v!r}", list(path), dest, "number:" + v) for v in BAD_NUMBERS]
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    d = tmp_path_factory.mktemp("garbage")
    config = parse_config(read_mapping(EX / "config.yaml"))
    registry = ZoneRegistry.from_objects(config.layout, of_kind(load_documents([EX / "zones.yaml"]), "SecurityZone"))
    rules = compile_objects(of_kind(load_documents([EX / "policies.yaml"]), "SecurityZonePolicy"), registry, config.nat64)
    (d / "gateway.json").write_text(published.render(published.document(rules, registry, complete=True)))
    return d, _garbage(d)


def _argv(case: tuple[str, list[str], str, str], d: Path, garbage: dict[str, Path]) -> list[str]:
    _, path, dest, kind = case
    parser = dict(COMMANDS)[tuple(path)]
    option = _options(parser)[dest].option_strings[-1]
    value = kind.split(":", 1)[1] if kind.startswith("number:") else str(garbage[kind])
    return _base(tuple(path), parser, d, dest) + [f"{option}={value}"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_garbage_is_refused_in_one_line(capsys, workdir, case) -> None:
    d, garbage = workdir
    argv = _argv(case, d, garbage)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # a usage error found by argparse (printed as one line, like every other)
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert (code, out) == (2, ""), (argv, err)
    assert err.count("\n") == 1 and err.startswith("zonectl: error: "), err
    _, _, dest, kind = case
    named = argv[-1].split("=", 1)[1] if not kind.startswith("number:") else argv[-1].split("=", 1)[0]
    assert named in err or f"argument {argv[-1].split('=', 1)[0]}" in err, err


def test_every_command_is_walked() -> None:
    """The walk finds the commands (and the garbage reaches each of their file and number options)."""
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"compile", "export", "explain", "render coredns", "ovn sync", "ovn run", "gateway apply", "gateway run",
            "operator run", "operator check-config", "run gateway", "run controller", "doctor", "lab up"} <= paths
    options = {(c[1][0], c[2]) for c in CASES}
    assert {("gateway", "timeout"), ("ovn", "poll"), ("export", "nodes"), ("gateway", "inputs"), ("ovn", "inputs"),
            ("doctor", "timeout"), ("lab", "nodes")} <= options
    assert len(CASES) > 300


def test_permission_denied_is_one_line(tmp_path: Path) -> None:
    """A file the command may not read: mode 000, read by root without the capabilities that override it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    secret = tmp_path / "config.yaml"
    secret.write_text((EX / "config.yaml").read_text())
    secret.chmod(0)
    proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "zonectl",
                           "render", "coredns", "--config", str(secret)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr == f"zonectl: error: config {secret}: cannot read: Permission denied\n"
