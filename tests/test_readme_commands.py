"""Every command the README shows parses and validates (issue 16, item 8).

The check is dry and cheap: each ``hdlora ...`` / ``python -m figures.table ...`` line of the
README's bash blocks is parsed by the real argument parser, and everything it names is
validated as the command would before computing — the config and its ``--set`` overrides, the
sweep spec (the README's sweep example once failed here: ``[figure]: unknown table``), config
fields given to ``--over`` / ``--x`` / ``--y``, flag values, figure names, output paths and
metric names. Nothing is run. ``cfg.toml`` (the README's placeholder) is an empty config.
"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)          # bash line continuations
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(("hdlora ", "python -m figures.table",
                                    "python -m simulations.flag_audit")):
                    commands.append(part)
    return commands


COMMANDS = _readme_commands()


def test_readme_shows_commands():
    assert len(COMMANDS) >= 10 and any(c.startswith("hdlora sweep") for c in COMMANDS)


def _argv(command: str, cfg: Path) -> list[str]:
    command = re.sub(r"\[(--[\w-]+)\]", r"\1", command)    # optional flags shown as [--flag]
    argv = shlex.split(command)
    return [str(cfg) if a == "cfg.toml" else a for a in argv]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses_and_validates(command, tmp_path, monkeypatch):
    from simulations import cli
    from simulations.cli_io import check_output_dir, check_output_file, parse_numbers
    from simulations.sweeps import load_spec
    from theory.config import Config
    from theory.schema import split_metric

    monkeypatch.chdir(ROOT)
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text("")
    argv = _argv(command, cfg_file)
    if argv[:3] == ["python", "-m", "simulations.flag_audit"]:
        from simulations.flag_audit import main as audit_main

        import glob                              # the shell expands docs/validation/*.md

        paths = [q for a in argv[3:] for q in (sorted(glob.glob(a)) if "*" in a else [a])]
        assert audit_main(paths) == 0          # cheap: it reads the committed tables
        return
    if argv[:3] == ["python", "-m", "figures.table"]:
        from figures.table import parse_paired, parser

        args = parser().parse_args(argv[3:])
        for metric in args.metrics.split(","):
            split_metric(metric)
        if args.paired:
            axis, _, _ = parse_paired(args.paired)
            Config().get(axis)
        return
    assert argv[0] == "hdlora"
    args = cli._parser().parse_args(argv[1:])
    if args.command in ("sweep", "validate"):
        spec = load_spec(args.spec)
        assert spec.points()
        check_output_dir(args.store or str(tmp_path / spec.name), "--store")
        return
    if args.command == "figures":
        from figures import EXTRA_FIGURES, FIGURES

        assert set(args.names) <= set(FIGURES + EXTRA_FIGURES), args.names
        return
    cfg = cli._load(args)                                     # config + every --set
    check_output_file(getattr(args, "out", None), "--out")
    if args.command == "optimize-pretraining":
        for field in args.over:
            cfg.get(field)
    if args.command == "mismatch-map":
        cfg.get(args.x), cfg.get(args.y)
        parse_numbers(args.x_values, "--x-values"), parse_numbers(args.y_values, "--y-values")
        if args.figure:
            check_output_file(str(tmp_path / args.figure), "--figure",
                              suffixes=("png", "pdf", "svg"))
