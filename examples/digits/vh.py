"""The Valohai runtime contract, as the steps of this example use it.

/valohai/inputs/<name>/ holds each input's files, /valohai/outputs/ is kept
after the run, /valohai/config/parameters.json has the parameter values, and
every JSON object printed on stdout is a metadata point. The VH_*_DIR
variables override the paths, so the scripts also run outside a container.
"""

import argparse
import json
import os
import pathlib
import sys

CONFIG_DIR = pathlib.Path(os.environ.get("VH_CONFIG_DIR", "/valohai/config"))
INPUTS_DIR = pathlib.Path(os.environ.get("VH_INPUTS_DIR", "/valohai/inputs"))
OUTPUTS_DIR = pathlib.Path(os.environ.get("VH_OUTPUTS_DIR", "/valohai/outputs"))


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parses the command line; values missing from it come from parameters.json.

    The step commands pass every parameter as a flag ({parameters}), so the
    command line shows them; parameters.json covers a command that does not.
    """
    config = CONFIG_DIR / "parameters.json"
    if config.is_file():
        values = json.loads(config.read_text())
        parser.set_defaults(**{name.replace("-", "_"): value for name, value in values.items()})
    return parser.parse_args()


def input_file(name: str, pattern: str = "*") -> pathlib.Path:
    """The one file of input `name` that matches pattern."""
    files = sorted(p for p in (INPUTS_DIR / name).glob(pattern) if p.is_file())
    if len(files) != 1:
        fail(f"input {name!r}: want one file matching {pattern!r} in {INPUTS_DIR / name}, found {len(files)}")
    return files[0]


def output_path(name: str) -> pathlib.Path:
    OUTPUTS_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUTS_DIR / name


def metadata(**values) -> None:
    """Prints one metadata point: a JSON object on a line of its own."""
    print(json.dumps(values), flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
